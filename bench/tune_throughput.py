"""Training throughput: honed's SFT loop vs a minimal PEFT loop vs a plain TRL SFTTrainer script, same rows.

All arms train SmolLM2-135M (dequantized from the PyPI-carried GGUF, fp32 on CPU) with LoRA r=8 / alpha 16 on all
7 projections, batch 8, lr 5e-4, for the same number of optimizer steps over the same examples of a task:

- minimal: the hardware's bar — a plain PyTorch + PEFT loop over honed's encoded rows, written here in a dozen
  lines: examples packed into one row (position ids reset), the model body's hidden states, the LM head applied
  only at the positions that predict a completion token, cross-entropy, AdamW;
- honed: `honed.train.loop.train_loop` (what `honed tune` runs) over the same rows, validation passes off so that
  only the training loop is compared (honed's val passes are extra work done on purpose, timed by `tune`);
- trl: the idiomatic `SFTTrainer` script (prompt/completion dataset of the same rendered texts, `peft_config=`,
  TRL's own tokenization and padded batches), set to fp32 and no gradient checkpointing (TRL's SFTConfig
  defaults to bf16 and gradient checkpointing, ~10x slower on a CPU without bf16 units; `--trl-defaults` keeps
  them); `--no-trl` leaves it out.

Tokens/s = real (non-padding) tokens of the examples trained on / training wall time (model loading excluded);
examples/s is the same over examples, the figure that counts learned answers. The arms alternate their order
over `--rounds` so that drift of a shared machine hits all of them. `--prompt tuned` trains on the task's short
`tuned_template`. Run:

    .venv/bin/python bench/tune_throughput.py --task examples/classify --examples 64 --steps 8 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _setup(task_dir: Path, n: int, model: str, prompt: str = "base") -> tuple[Any, Any, list[Any], list[dict]]:
    from honed.task.data import load_items
    from honed.task.spec import load_task
    from honed.train.dataset import encode, render_completion
    from honed.train.loading import load_base
    from honed.task.chat import from_tokenizer

    task = load_task(task_dir, prompt=prompt)
    items = load_items(task, "train")[:n]
    loaded = load_base(model)
    tpl = from_tokenizer(loaded.tokenizer)
    enc, _ = encode(task, items, tpl, max_length=1024)
    honed_rows = enc
    trl_rows = []
    for it in items:
        prompt, completion = render_completion(task, it.inputs, it.expected, tpl)
        trl_rows.append({"prompt": prompt, "completion": completion})
    return task, tpl, honed_rows, trl_rows


def _fresh(model: str) -> tuple[Any, Any]:
    from honed.train.loading import load_base

    loaded = load_base(model)
    tok = loaded.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return loaded.model, tok


def run_trl(model: str, rows: list[dict], steps: int, batch: int, out: str, defaults: bool = False
            ) -> dict[str, float]:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    m, tok = _fresh(model)
    args = SFTConfig(output_dir=out, per_device_train_batch_size=batch, learning_rate=5e-4, max_steps=steps,
                     logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0,
                     dataloader_num_workers=0, disable_tqdm=True,
                     **({} if defaults else {"bf16": False, "gradient_checkpointing": False}))
    trainer = SFTTrainer(model=m, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS,
                                                task_type="CAUSAL_LM"))
    lengths = [len(r["input_ids"]) for r in trainer.train_dataset]
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    tokens = statistics.fmean(lengths) * steps * batch
    return _result(secs, int(tokens), steps * batch)


def _lora(model: str) -> Any:
    from peft import LoraConfig, get_peft_model

    m, _ = _fresh(model)
    return get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS,
                                        task_type="CAUSAL_LM"))


def _result(secs: float, tokens: int, examples: int) -> dict[str, float]:
    return {"seconds": secs, "tokens": tokens, "tokens_per_s": tokens / secs, "examples_per_s": examples / secs}


def run_minimal(model: str, rows: list[Any], steps: int, batch: int) -> dict[str, float]:
    """The bar: a minimal PEFT loop with logits only at the completion positions."""
    import torch

    m = _lora(model)
    body, head = m.get_base_model().model, m.get_base_model().lm_head
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=5e-4)
    m.train()
    tokens = 0
    t0 = time.perf_counter()
    for step in range(steps):
        chunk = [rows[(step * batch + i) % len(rows)] for i in range(batch)]
        ids = [t for e in chunk for t in e.input_ids]
        pos = [p for e in chunk for p in range(len(e.input_ids))]
        mask = [c for e in chunk for c in e.completion_mask]
        where = [i - 1 for i in range(1, len(ids)) if mask[i]]
        hidden = body(input_ids=torch.tensor([ids]), position_ids=torch.tensor([pos]),
                      use_cache=False).last_hidden_state  # no KV cache: reset positions keep examples apart
        logits = head(hidden[0, where])
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([ids[i + 1] for i in where]))
        loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += len(ids)
    return _result(time.perf_counter() - t0, tokens, steps * batch)


def run_honed(model: str, rows: list[Any], steps: int, batch: int) -> dict[str, float]:
    from honed.train.loop import Plan, train_loop

    m = _lora(model)
    res = train_loop(m, rows, batch_size=batch, grad_accum=1, learning_rate=5e-4, weight_decay=0.0,
                     schedule="linear", plan=Plan(total=steps, warmup_ratio=0.1), seed=0, neftune_alpha=None,
                     after_step=lambda step, last: False, on_loss=lambda *a: None, val_seconds=lambda: 0.0)
    return _result(res.seconds, res.tokens, steps * batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", type=Path, default=Path("examples/classify"))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--trl-defaults", action="store_true", help="keep TRL's bf16 + gradient checkpointing")
    ap.add_argument("--no-trl", action="store_true", help="compare honed with the minimal loop only")
    ap.add_argument("--prompt", default="base", choices=["base", "tuned"])
    a = ap.parse_args()
    import torch

    _, _, honed_rows, trl_rows = _setup(a.task, a.examples, a.model, a.prompt)
    arms = ["minimal", "honed"] + ([] if a.no_trl else ["trl"])
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = arms[r % len(arms):] + arms[:r % len(arms)]
            res: dict[str, Any] = {}
            for arm in order:
                if arm == "trl":
                    res[arm] = run_trl(a.model, trl_rows, a.steps, a.batch, f"{tmp}/{arm}", a.trl_defaults)
                elif arm == "minimal":
                    res[arm] = run_minimal(a.model, honed_rows, a.steps, a.batch)
                else:
                    res[arm] = run_honed(a.model, honed_rows, a.steps, a.batch)
                print(f"round {r + 1} {arm}: {res[arm]['tokens_per_s']:.1f} tok/s "
                      f"{res[arm]['examples_per_s']:.2f} examples/s ({res[arm]['seconds']:.1f} s)", file=sys.stderr)
            res["honed_vs_minimal"] = res["honed"]["tokens_per_s"] / res["minimal"]["tokens_per_s"]
            if "trl" in res:
                res["honed_vs_trl"] = res["honed"]["tokens_per_s"] / res["trl"]["tokens_per_s"]
            res["load_avg"] = os.getloadavg()[0]
            rounds.append(res)
    doc = {"task": str(a.task), "prompt": a.prompt, "model": a.model, "trl_defaults": a.trl_defaults,
           "examples": a.examples, "steps": a.steps, "batch": a.batch, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "rounds": rounds,
           "median_honed_vs_minimal": statistics.median(r["honed_vs_minimal"] for r in rounds),
           "median_honed_vs_trl": (statistics.median(r["honed_vs_trl"] for r in rounds) if not a.no_trl
                                   else None)}
    print(json.dumps(doc, indent=2))
    if a.json:
        a.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()

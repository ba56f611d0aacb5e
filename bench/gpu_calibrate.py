"""GPU calibration: peak memory and tokens/s of LoRA / QLoRA training steps, beside the planner's estimate.

What sets the planner's GPU constants (`honed.train.plan`: CUDA_CONTEXT_BYTES, SLACK[(True, ·)],
LOGIT_BYTES["half"], NF4_BYTES_PER_PARAM) and the H100 rows of tests/unit/test_plan.py. Each configuration runs in
its own process (a clean peak): a model of a published shape with random weights (no download: the configs are
written below, as in tests/unit/test_plan.py), LoRA r=16 on all 7 projections, dropout 0.05, AdamW, micro-batch 1
of `tokens` tokens, the loss on every position (the planner's worst case); 2 warm-up steps, then `--steps` timed
ones. QLoRA loads the random checkpoint through bitsandbytes NF4 (double quantization, bf16 compute) and
PEFT's k-bit preparation, as `honed tune --method qlora` does (`honed.train.loading`).

Measured per row: peak reserved by PyTorch's allocator + the CUDA context (the process's device memory outside
the allocator, read from `torch.cuda.mem_get_info`), live peak (max allocated), tokens/s, and the planner's
`train_memory(...).total` with its ratio to the measurement (the issue's bar: within 25%).

    python bench/gpu_calibrate.py --json /tmp/gpu.json                   # the default grid (~10 minutes, H100)
    python bench/gpu_calibrate.py --models qwen2.5-0.5b --methods qlora --tokens 512 --steps 5

Second part, llama.cpp offload (`--eval-task`): `honed eval` of a GGUF on the task's test split with
`--gpu-layers 0` and `--gpu-layers -1`, items/s of each (needs llama-cpp-python built with CUDA).

    python bench/gpu_calibrate.py --eval-task examples/classify --eval-model smollm2-135m --skip-train

Not yet run: no GPU was lent to this project when it was written (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
                     "tie_word_embeddings": True, "max_position_embeddings": 8192},
    "qwen2.5-0.5b": {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True, "max_position_embeddings": 32768},
    "llama-3.2-1b": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
                     "tie_word_embeddings": True, "max_position_embeddings": 131072},
    "qwen3-4b": {"model_type": "qwen3", "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
                 "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
                 "tie_word_embeddings": True, "max_position_embeddings": 40960},
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GRID = [(m, method, ckpt, tokens) for m in SHAPES for method, ckpt in (("lora", False), ("lora", True),
                                                                      ("qlora", True)) for tokens in (512, 2048)]


def one(model: str, method: str, ckpt: bool, tokens: int, steps: int) -> dict[str, Any]:
    """One configuration in this process: its peak memory and tokens/s, and the planner's estimate."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    from honed.train.arch import arch_from_config
    from honed.train.loading import count_4bit, prepare_kbit, qlora_config
    from honed.train.plan import train_memory

    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(**SHAPES[model])
    net = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    if method == "qlora":  # bitsandbytes quantizes while reading a checkpoint: write the random one, read it back
        folder = Path(tempfile.mkdtemp(prefix="honed-calib-"))
        net.save_pretrained(folder)
        del net
        net = transformers.AutoModelForCausalLM.from_pretrained(folder, quantization_config=qlora_config(),
                                                                dtype=torch.bfloat16, device_map={"": 0})
        assert count_4bit(net) > 0, "bitsandbytes loaded no 4-bit layer"
        net = prepare_kbit(net, gradient_checkpointing=True)
    else:
        net = net.to("cuda")
        if ckpt:
            net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            net.enable_input_require_grads()
    net = get_peft_model(net, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS,
                                         task_type="CAUSAL_LM")).train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (1, tokens), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    timed: list[float] = []
    for i in range(2 + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = net(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 2:
            timed.append(time.perf_counter() - t0)
    free, total = torch.cuda.mem_get_info()
    context = (total - free) - torch.cuda.memory_reserved()  # this process's device memory outside the allocator
    measured = torch.cuda.max_memory_reserved() + context
    planned = train_memory(arch_from_config(SHAPES[model], name=model), method=method, precision="bf16",
                           gradient_checkpointing=ckpt, micro_batch=1, seq_len=tokens, rank=16, targets=TARGETS,
                           dropout=0.05, on_gpu=True)
    timed.sort()
    return {"model": model, "method": method, "checkpointing": ckpt, "tokens": tokens,
            "measured_gib": round(measured / 2**30, 3), "allocated_peak_gib": round(torch.cuda.max_memory_allocated()
                                                                                    / 2**30, 3),
            "context_gib": round(context / 2**30, 3), "planned_gib": round(planned.total / 2**30, 3),
            "planned_over_measured": round(planned.total / measured, 3),
            "tokens_per_s": round(tokens / timed[len(timed) // 2], 1), "device": torch.cuda.get_device_name(0),
            "torch": torch.__version__, "transformers": transformers.__version__}


def eval_items_per_s(task: str, model: str, gpu_layers: int, limit: int) -> dict[str, Any]:
    """`honed eval` of a GGUF with llama.cpp offloading `gpu_layers` layers: its items/s (cache off: fresh home)."""
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as out:
        doc_path = Path(out) / "eval.json"
        env = {**os.environ, "HONED_HOME": home}
        subprocess.run([sys.executable, "-m", "honed", "eval", task, "--model", model, "--limit", str(limit),
                        "--gpu-layers", str(gpu_layers), "--json", str(doc_path)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        doc = json.loads(doc_path.read_text())
    return {"gpu_layers": gpu_layers, "items_per_s": doc["items_per_s"], "tokens_per_s": doc["tokens_per_s"],
            "n_gpu_layers_recorded": doc["model"]["details"].get("n_gpu_layers")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--methods", nargs="*", default=["lora", "qlora"], choices=["lora", "qlora"])
    ap.add_argument("--tokens", nargs="*", type=int, default=[512, 2048])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--eval-task", help="a task folder: also measure `honed eval` items/s, GPU offload vs CPU")
    ap.add_argument("--eval-model", default="smollm2-135m")
    ap.add_argument("--eval-limit", type=int, default=40)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration as JSON, in a child process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(**json.loads(args.one))))
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this script calibrates the planner's GPU constants and needs one")
    rows: list[dict[str, Any]] = []
    grid = [] if args.skip_train else [g for g in GRID if g[0] in args.models and g[1] in args.methods
                                       and g[3] in args.tokens]
    for model, method, ckpt, tokens in grid:
        spec = json.dumps({"model": model, "method": method, "ckpt": ckpt, "tokens": tokens, "steps": args.steps})
        proc = subprocess.run([sys.executable, __file__, "--one", spec], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            rows.append({"model": model, "method": method, "checkpointing": ckpt, "tokens": tokens,
                         "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{model:14} {method:5} ckpt={ckpt!s:5} {tokens:5} tok  " + (
            f"measured {r['measured_gib']:6.2f} GiB  planned {r['planned_gib']:6.2f} GiB "
            f"({r['planned_over_measured']:.2f}x)  {r['tokens_per_s']:8.0f} tok/s" if "error" not in r
            else f"FAILED: {r['error']}"), flush=True)
    offload = []
    if args.eval_task:
        for layers in (0, -1):
            offload.append(eval_items_per_s(args.eval_task, args.eval_model, layers, args.eval_limit))
            print(f"honed eval {args.eval_model} --gpu-layers {layers:>2}: {offload[-1]['items_per_s']} items/s",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({"train": rows, "eval_offload": offload}, indent=1))


if __name__ == "__main__":
    main()

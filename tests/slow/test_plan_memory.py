"""The memory planner against a real CPU training step of the real SmolLM2: what only the real model's size
shows (a tiny model's step is all overhead)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from honed.backends.models import resolve_gguf
from honed.errors import ModelNotFound
from honed.train.arch import LORA_MODULES, read_arch
from honed.train.plan import train_memory

pytestmark = pytest.mark.slow


def gguf_or_skip(alias: str) -> None:
    try:
        resolve_gguf(alias)
    except ModelNotFound as exc:
        pytest.skip(str(exc))


STEP = textwrap.dedent("""
    import json, resource, sys
    def peak_kib():
        # VmHWM: this process's own high-water mark. ru_maxrss is not: on Linux it carries the parent's RSS
        # across fork + exec (a pytest process that loaded Gemma made the child "peak" at 2.6 GB before it began).
        try:
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import torch, transformers, peft
    transformers.logging.set_verbosity_error()
    from honed.train.loading import load_base
    torch.manual_seed(0)
    model = load_base("smollm2-135m", dtype="float32").model  # as `honed tune` loads it
    config = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=json.loads(sys.argv[1]),
                             task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, config).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    before = peak_kib()
    ids = torch.randint(0, model.config.vocab_size, (4, 128))
    labels = ids.clone()
    labels[:, :64] = -100  # completion-only loss: the prompt half is masked
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    out.loss.backward()
    opt.step()
    moved = sum(not torch.equal(trainable[n], p) for n, p in model.named_parameters() if p.requires_grad)
    after = peak_kib()
    print(json.dumps({"before_kib": before, "peak_kib": after, "moved": moved, "trainable": len(trainable)}))
""")


def test_cpu_training_step_peak_rss_within_25_percent_of_the_plan() -> None:
    """One real step (forward + backward + AdamW), LoRA r=8 on the 7 projections, fp32, batch 4 × 128 tokens,
    in a fresh process: its peak RSS (VmHWM; loading peaks lower, asserted) against the plan's CPU total."""
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    gguf_or_skip("smollm2-135m")
    proc = subprocess.run([sys.executable, "-c", STEP, json.dumps(list(LORA_MODULES))], capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    assert measured["moved"] == measured["trainable"] > 0  # the step really trained the adapters
    assert measured["peak_kib"] > measured["before_kib"] * 1.2  # the peak is the step's, not the model load's
    planned = train_memory(read_arch("smollm2-135m"), method="lora", precision="fp32", gradient_checkpointing=False,
                           micro_batch=4, seq_len=128, rank=8, targets=LORA_MODULES, dropout=0.05, on_gpu=False)
    peak = measured["peak_kib"] * 1024
    print(f"peak RSS {peak / 1e9:.2f} GB, planned {planned.total / 1e9:.2f} GB ({planned.total / peak - 1:+.0%})")
    assert abs(planned.total - peak) <= 0.25 * peak

"""The CUDA paths, on the tiny model (tests/tiny_model.py): skipped where torch sees no CUDA device.

On CUDA, `honed tune` loads the base in bfloat16 on the GPU (`honed.train.session`) and the transformers backend
evaluates there; these check that both run and agree with what the CPU path computes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from honed.types import Message, Request, Sampling

pytestmark = pytest.mark.gpu

REQUESTS = [Request(messages=(Message("user", f"Message: {text}"),), sampling=Sampling(max_tokens=6))
            for text in ("invoice please help me today", "parcel my order the store", "hello thanks again now")]


def test_transformers_backend_on_cuda_matches_the_cpu(tiny_model: Any) -> None:
    from honed.backends.transformers import TransformersBackend

    with TransformersBackend(str(tiny_model.hf), device="cpu") as cpu, \
            TransformersBackend(str(tiny_model.hf), device="cuda", dtype="float32") as gpu:
        assert gpu.info.details["device"] == "cuda" and gpu.info.sha256 == cpu.info.sha256
        ids = cpu.tokenize(cpu.render(REQUESTS[0]))
        assert (cpu.logits(ids) - gpu.logits(ids).cpu()).abs().max() < 1e-3
        assert [r.text for r in gpu.generate(REQUESTS)] == [r.text for r in cpu.generate(REQUESTS)]


def test_tune_on_cuda_trains(tiny_model: Any, planted_task: Path) -> None:
    from honed.task.spec import load_task
    from honed.train.config import TuneConfig
    from honed.train.sft import tune

    summary = tune(load_task(planted_task), TuneConfig(model=str(tiny_model.hf), max_steps=20, eval_every=10,
                                                       learning_rate=3e-3, replay_fraction=0.0, force=True))
    run = Path(summary.run_dir)
    assert summary.status == "complete" and summary.steps == 20
    curves = json.loads((run / "curves.json").read_text())
    assert curves["train"][-1]["loss"] < curves["train"][0]["loss"]
    assert json.loads((run / "manifest.json").read_text())["base_model"]["path"] == str(tiny_model.hf)

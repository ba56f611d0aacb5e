"""QLoRA that is QLoRA, and llama.cpp offload, on the tiny model (tests/tiny_model.py): skipped without CUDA (and
without bitsandbytes, or a llama.cpp built for a GPU, where each needs one). Never run yet: no GPU was lent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu


def _tune(model: str, task: Path) -> tuple[dict[str, Any], Path]:
    from honed.task.spec import load_task
    from honed.train.config import TuneConfig
    from honed.train.sft import tune

    summary = tune(load_task(task), TuneConfig(model=model, method="qlora", max_steps=20, eval_every=10,
                                               learning_rate=3e-3, replay_fraction=0.0, force=True))
    return summary, Path(summary.run_dir)


def test_qlora_trains_a_4bit_base_and_says_so(tiny_model: Any, planted_task: Path) -> None:
    pytest.importorskip("bitsandbytes")
    summary, run = _tune(str(tiny_model.hf), planted_task)
    assert summary.status == "complete" and summary.method == "qlora" and summary.steps == 20
    manifest = json.loads((run / "manifest.json").read_text())
    q = manifest["base_model"]["quantization"]
    assert manifest["method"] == "qlora" and q["quant_type"] == "nf4" and q["double_quant"] is True
    assert q["linear_4bit_modules"] == 2 * 7  # both layers' 7 projections; the tied LM head stays in bf16
    curves = json.loads((run / "curves.json").read_text())
    assert curves["train"][-1]["loss"] < curves["train"][0]["loss"]
    assert (run / "best" / "adapter_model.safetensors").is_file()


def test_qlora_from_a_gguf_dequantizes_then_quantizes(tiny_model: Any, planted_task: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("bitsandbytes")
    from honed.backends.models import file_sha256

    monkeypatch.setenv("HONED_MODELS", str(tmp_path / "models"))
    summary, run = _tune(str(tiny_model.gguf), planted_task)
    assert summary.status == "complete"
    base = json.loads((run / "manifest.json").read_text())["base_model"]
    assert base["from_gguf"] is True and base["sha256"] == file_sha256(tiny_model.gguf)
    assert "dequantized to bfloat16" in base["quantization"]["via"]
    assert list((tmp_path / "models" / "hf-from-gguf").iterdir())


def test_llamacpp_offloads_every_layer_by_default(tiny_model: Any) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    if not llama_cpp.llama_supports_gpu_offload():
        pytest.skip("llama-cpp-python is built for the CPU only")
    from honed.backends.llamacpp import LlamaCppBackend
    from honed.types import Message, Request, Sampling

    req = [Request(messages=(Message("user", "Message: invoice please"),), sampling=Sampling(max_tokens=4))]
    with LlamaCppBackend(str(tiny_model.gguf)) as gpu, LlamaCppBackend(str(tiny_model.gguf), n_gpu_layers=0) as cpu:
        assert gpu.info.details["n_gpu_layers"] == -1 and cpu.info.details["n_gpu_layers"] == 0
        assert gpu.cache_identity() != cpu.cache_identity() == cpu.info.sha256
        assert [r.text for r in gpu.generate(req)] == [r.text for r in cpu.generate(req)]

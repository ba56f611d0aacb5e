"""`honed eval --gpu-layers` on the tiny model's GGUF (tests/tiny_model.py) through llama.cpp: the eval document
records the layers that ran on the GPU (what a bake-off arm then carries), and layers asked of a CPU-only build
are refused in one line instead of running on the CPU under a GPU setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import honed_cli

pytestmark = pytest.mark.integration


def test_eval_records_the_offload(tiny_model: Any, planted_task: Path, honed_home: Path, tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    out = tmp_path / "eval.json"
    proc = honed_cli("eval", str(planted_task), "--model", str(tiny_model.gguf), "--limit", "2", "--gpu-layers",
                     "0", "--json", str(out), home=honed_home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(out.read_text())["model"]["details"]["n_gpu_layers"] == 0
    if llama_cpp.llama_supports_gpu_offload():
        return
    proc = honed_cli("eval", str(planted_task), "--model", str(tiny_model.gguf), "--limit", "2", "--gpu-layers",
                     "8", home=honed_home)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "--gpu-layers 8: this llama-cpp-python build cannot offload to a GPU" in lines[0]

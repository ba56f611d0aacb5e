"""`--gpu-layers`: llama.cpp's offload, decided from what this llama-cpp-python build can do, passed by `honed
eval` and by the bake-off to its llamacpp arms only, refused where it cannot hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed.errors import UserError
from honed.evaluate.bakeoff import _eval_args
from honed.task.spec import ArmSpec, load_task
from tests.conftest import honed_cli

pytestmark = pytest.mark.unit


def test_default_follows_the_build() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from honed.backends.llamacpp import gpu_layers

    can = bool(llama_cpp.llama_supports_gpu_offload())
    assert gpu_layers(llama_cpp, None) == (-1 if can else 0)
    assert gpu_layers(llama_cpp, 0) == 0
    with pytest.raises(UserError, match="0 for none or -1 for all"):
        gpu_layers(llama_cpp, -2)
    if can:
        assert gpu_layers(llama_cpp, 12) == 12
    else:
        with pytest.raises(UserError, match="cannot offload to a GPU.*GGML_CUDA=on"):
            gpu_layers(llama_cpp, 12)


def test_bakeoff_passes_it_to_llamacpp_arms_only(mini_task: Path, tmp_path: Path) -> None:
    task = load_task(mini_task)
    out = tmp_path / "a.json"
    gguf = _eval_args(task, ArmSpec(model="smollm2-135m"), "test", 1, None, out, gpu_layers=-1)
    http = _eval_args(task, ArmSpec(model="m", backend="openai", base_url="http://x"), "test", 1, None, out,
                      gpu_layers=-1)
    default = _eval_args(task, ArmSpec(model="smollm2-135m"), "test", 1, None, out)
    assert gguf[gguf.index("--gpu-layers") + 1] == "-1"
    assert "--gpu-layers" not in http and "--gpu-layers" not in default


def test_eval_refuses_gpu_layers_for_another_backend(mini_task: Path, honed_home: Path) -> None:
    proc = honed_cli("eval", str(mini_task), "--backend", "openai", "--model", "m", "--base-url",
                     "http://127.0.0.1:9", "--gpu-layers", "4", home=honed_home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--gpu-layers sets llama.cpp's offload; the openai backend places the model itself" in proc.stderr

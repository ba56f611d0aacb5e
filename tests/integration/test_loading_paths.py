"""How `honed tune` gets its base, on the tiny model (tests/tiny_model.py): the GGUF dequantized into a checkpoint
folder for QLoRA, the refusal to call a float model QLoRA, `--method qlora` refused in one line on a machine
without CUDA or bitsandbytes, and a hub id served from the local hub cache while offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from honed.errors import UserError
from tests.conftest import honed_cli

pytestmark = pytest.mark.integration


def test_gguf_is_dequantized_once_into_a_checkpoint_folder(tiny_model: Any, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from honed.backends.models import file_sha256
    from honed.train.loading import _load_gguf, dequantized_checkpoint, load_base

    monkeypatch.setenv("HONED_MODELS", str(tmp_path / "models"))
    folder = dequantized_checkpoint(tiny_model.gguf)
    assert folder.parent == tmp_path / "models" / "hf-from-gguf"
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert f'"sha256": "{file_sha256(tiny_model.gguf)}"' in (folder / "honed-source.json").read_text()
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert dequantized_checkpoint(tiny_model.gguf) == folder  # the second call reuses it
    assert (folder / "model.safetensors").stat().st_mtime_ns == written
    direct = _load_gguf(tiny_model.gguf, "float32", None).model.to(torch.bfloat16).state_dict()
    again = load_base(str(folder), dtype="bfloat16")
    assert again.chat_template and again.chat_template == _load_gguf(tiny_model.gguf, "float32", None).chat_template
    saved = again.model.state_dict()
    assert set(saved) == set(direct)
    assert all(torch.equal(saved[k], direct[k]) for k in direct)  # the GGUF's floats, exactly, in bf16


def test_a_float_model_is_never_recorded_as_qlora(tiny_model: Any) -> None:
    import torch
    from transformers import BitsAndBytesConfig

    from honed.train.loading import count_4bit, load_base, quantization_record

    loaded = load_base(str(tiny_model.hf))
    assert count_4bit(loaded.model) == 0
    cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.bfloat16)
    with pytest.raises(UserError, match="no 4-bit linear layer.*refusing to train it as QLoRA"):
        quantization_record(loaded.model, cfg, via="test")


def test_tune_method_qlora_without_cuda_is_one_line(planted_task: Path, tiny_model: Any, honed_home: Path) -> None:
    from honed.train.loading import qlora_missing

    missing = qlora_missing()
    if not missing:
        pytest.skip("this machine can run QLoRA")
    proc = honed_cli("tune", str(planted_task), "--model", str(tiny_model.hf), "--method", "qlora", "--max-steps",
                     "2", home=honed_home)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "--method qlora needs" in ln)
    for need in missing:
        assert need.split(" (")[0] in line
    assert not list((honed_home / "runs").glob("**/manifest.json"))  # refused before any run folder


def test_offline_hub_id_loads_from_the_local_cache(tiny_model: Any, tmp_path: Path) -> None:
    """A hub id works offline once the hub cache holds it: the layout huggingface_hub writes, built by hand."""
    home = tmp_path / "hf-home"
    repo = home / "hub" / "models--honed-tests--tiny-smollm2"
    snap = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model.hf, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    code = ("from honed.train.loading import load_base; l = load_base('honed-tests/tiny-smollm2'); "
            "print(l.source); print(l.extra); print(l.from_gguf)")
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    source, extra, from_gguf = proc.stdout.strip().splitlines()[-3:]
    assert Path(source) == snap and extra == "{'hub_id': 'honed-tests/tiny-smollm2'}" and from_gguf == "False"

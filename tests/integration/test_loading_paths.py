"""How `honed tune` gets its base, on the tiny model (tests/tiny_model.py): the GGUF dequantized into a checkpoint
folder for QLoRA, the refusal to call a float model QLoRA, `--method qlora` refused in one line on a machine
without CUDA or bitsandbytes, and a hub id served from the local hub cache while offline."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def built(tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny GGUF's float32 checkpoint folder, written once for this module (each
    write is one read of the GGUF by transformers, ~12 s on the tiny model: it carries SmolLM2's whole vocab)."""
    from honed.backends.checkpoint import dequantized_checkpoint

    models = tmp_path_factory.mktemp("built-models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HONED_MODELS", str(models))
        dequantized_checkpoint(tiny_model.gguf)
    return models


def own_copy(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    models = tmp_path / "models"
    shutil.copytree(built, models)
    monkeypatch.setenv("HONED_MODELS", str(models))
    return models


def test_gguf_is_dequantized_once_into_a_checkpoint_folder(tiny_model: Any, built: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from honed.backends.checkpoint import dequantize, dequantized_checkpoint
    from honed.backends.models import file_sha256
    from honed.backends.transformers import TransformersBackend
    from honed.task.chat import from_tokenizer
    from honed.train.loading import load_base

    models = own_copy(built, tmp_path, monkeypatch)
    sha = file_sha256(tiny_model.gguf)
    folder = models / "hf-from-gguf" / f"{tiny_model.gguf.stem}-{sha[:16]}-float32"
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    stamp = json.loads((folder / "honed-source.json").read_text())
    assert stamp["sha256"] == sha and stamp["dtype"] == "float32"
    assert stamp["weights"] == {"model.safetensors": file_sha256(folder / "model.safetensors", cache=False)}
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert dequantized_checkpoint(tiny_model.gguf) == folder  # a later call reuses it
    assert (folder / "model.safetensors").stat().st_mtime_ns == written

    # what tune, the gate and the merge load is the GGUF's own floats, bit for bit, recorded as the GGUF
    direct, direct_tok = dequantize(tiny_model.gguf, "float32")
    loaded = load_base(str(tiny_model.gguf))
    assert (loaded.source, loaded.sha256, loaded.from_gguf) == (str(tiny_model.gguf), sha, True)
    assert loaded.chat_template and loaded.chat_template == direct_tok.chat_template
    want, got = direct.state_dict(), loaded.model.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    text = "<|im_start|>user\nnaïve café 😀 {\"a\": [1, 2]}<|im_end|>\n"
    assert loaded.tokenizer(text).input_ids == direct_tok(text).input_ids
    with TransformersBackend(str(tiny_model.gguf)) as be:
        assert be.info.sha256 == sha and be.info.path == str(tiny_model.gguf)
        assert be.tokenize(text) == from_tokenizer(direct_tok).tokenize(text)
    assert (folder / "model.safetensors").stat().st_mtime_ns == written  # neither load wrote it again

    # QLoRA's folder is the same floats in bf16, beside it
    bf16 = dequantized_checkpoint(tiny_model.gguf, "bfloat16")
    assert bf16.parent == folder.parent and bf16.name.endswith("-bfloat16")
    half = load_base(str(bf16), dtype="bfloat16").model.state_dict()
    assert all(torch.equal(half[k], want[k].to(torch.bfloat16)) for k in want)


def test_an_edited_or_torn_checkpoint_folder_is_rebuilt_not_loaded(tiny_model: Any, built: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from honed.backends.checkpoint import _intact, dequantized_checkpoint
    from honed.backends.models import file_sha256

    models = own_copy(built, tmp_path, monkeypatch)
    sha = file_sha256(tiny_model.gguf)
    (folder,) = (models / "hf-from-gguf").iterdir()
    weights = folder / "model.safetensors"
    original = load_file(weights)
    name = next(k for k, v in original.items() if v.abs().sum() > 0)
    edited = {**original, name: torch.zeros_like(original[name])}  # an edit that keeps the file loadable
    save_file(edited, weights, metadata={"format": "pt"})
    assert not _intact(folder, sha, "float32")
    assert dequantized_checkpoint(tiny_model.gguf) == folder  # rebuilt in place, whole
    rebuilt = load_file(weights)
    assert all(torch.equal(rebuilt[k], original[k]) for k in original)
    assert not list(folder.parent.glob(".*partial"))

    (folder / "honed-source.json").unlink()  # a write killed before its stamp: never loaded
    assert not _intact(folder, sha, "float32")
    assert _intact(folder.with_name("missing"), sha, "float32") is False


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

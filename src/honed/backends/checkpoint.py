"""A GGUF as a Hugging Face checkpoint folder, written once per GGUF and dtype, for everything that runs it in
transformers (tune, the gate's evaluations, the merge before export, the template check).

transformers reads a GGUF through the `gguf` package's pure-Python reader, which walks every field of the file
three times per load (tokenizer, config, weights): on SmolLM2-135M that is 22-24 s per load, and the demo loaded
it four times (tune, the gate's base and tuned sides, the merge). The same floats saved as safetensors load in
0.3 s, bit for bit (measured 2026-12-07: equal state dicts, equal token ids, chat template and special tokens).
So a GGUF is dequantized once into `MODELS/hf-from-gguf/<stem>-<sha256[:16]>-<dtype>/` and loaded from there.

The folder is a cache of the GGUF, never an identity of its own: whoever loads it records the GGUF's sha256. Its
stamp (`honed-source.json`) holds the GGUF's sha256, the dtype and each weight file's sha256; a folder whose
weights no longer hash to their stamp (edited, truncated) is rebuilt, never loaded. Writes go to a private folder
renamed into place whole, so a killed write leaves nothing to load and two processes racing both end with one
complete folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from honed.backends.models import file_sha256, models_dir

STAMP = "honed-source.json"
DTYPE = "float32"
"""What LoRA, evaluation and the merge load: the floats transformers' GGUF loader produces, unrounded."""


def dequantize(gguf: Path, dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer) read from the GGUF itself by transformers, as plain float modules.

    transformers marks a model read from a GGUF as quantized (`hf_quantizer`, `config.quantization_config`), so
    PEFT and Trainer refuse to train it and `save_pretrained` refuses to save it; the weights are plain floats by
    then, so both marks are dropped: the model is what it really is, a float checkpoint.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    m = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype),
                                             local_files_only=True)
    m.hf_quantizer = None
    if hasattr(m.config, "quantization_config"):
        del m.config.quantization_config
    for attr in ("is_quantized", "_is_quantized_training_enabled"):
        if getattr(m, attr, False):
            setattr(m, attr, False)
    return m, tok


def _weights(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))


def _intact(folder: Path, sha: str, dtype: str) -> bool:
    """The folder is complete and its weights hash to what its stamp recorded when it was written."""
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return False
    if not isinstance(stamp, dict) or stamp.get("sha256") != sha or stamp.get("dtype") != dtype:
        return False
    files = stamp.get("weights")
    if not isinstance(files, dict) or not files or {p.name for p in _weights(folder)} != set(files):
        return False
    return (folder / "config.json").is_file() and all(file_sha256(folder / n) == h for n, h in files.items())


def dequantized_checkpoint(gguf: Path, dtype: str = DTYPE) -> Path:
    """The folder holding `gguf` dequantized to `dtype` (model, tokenizer with its chat template, stamp); written
    on first use (one GGUF load), reused after."""
    import torch

    gguf = Path(gguf)
    sha = file_sha256(gguf)
    folder = models_dir() / "hf-from-gguf" / f"{gguf.stem}-{sha[:16]}-{dtype}"
    if _intact(folder, sha, dtype):
        return folder
    model, tok = dequantize(gguf, dtype)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(getattr(torch, dtype)).save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    stamp = {"gguf": str(gguf), "sha256": sha, "dtype": dtype,
             "weights": {p.name: file_sha256(p) for p in _weights(tmp)}}
    (tmp / STAMP).write_text(json.dumps(stamp, indent=1), encoding="utf-8")
    if folder.exists():
        if _intact(folder, sha, dtype):  # another process finished the same folder first
            shutil.rmtree(tmp, ignore_errors=True)
            return folder
        shutil.rmtree(folder)  # torn or edited: replaced whole
    try:
        tmp.replace(folder)
    except OSError:  # a racing writer renamed its copy in between: theirs is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
        if not _intact(folder, sha, dtype):
            raise
    return folder

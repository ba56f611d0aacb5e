"""Merge a tune run's LoRA adapter into its base and save a plain Hugging Face checkpoint (safetensors +
tokenizer with its chat template), the input of llama.cpp's converter.

The base comes through `honed.train.loading.load_base`, exactly as `honed tune` loaded it: a GGUF from its
dequantized checkpoint folder (`honed.backends.checkpoint`, which drops transformers' `hf_quantizer` /
`config.quantization_config` marks once, when it writes the folder, so the merged model can be saved at all:
transformers refuses to save a model it believes is quantized). The merge is checked here too: a save that
silently kept the quantization marks is refused.

Resumable: the folder carries `honed_merge.json` with its inputs' hashes; a later export with the same base
and adapter reuses it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from honed.errors import MissingDependency, UserError
from honed.store import write_json_atomic

STAMP = "honed_merge.json"


@dataclass(frozen=True)
class Merged:
    path: Path
    base_sha256: str
    adapter_sha256: str
    seconds: float
    reused: bool


def merge_adapter(base: str, adapter: Path, out: Path) -> Merged:
    """`base` (alias, .gguf or HF folder) + PEFT `adapter` → merged checkpoint folder `out`."""
    from honed.backends.transformers import adapter_sha256

    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json); is the tune run complete?")
    a_sha = adapter_sha256(adapter)
    stamp = out / STAMP
    if stamp.is_file():
        doc = json.loads(stamp.read_text(encoding="utf-8"))
        if doc.get("adapter_sha256") == a_sha and doc.get("base") == base:
            return Merged(out, doc["base_sha256"], a_sha, 0.0, reused=True)
    try:
        from peft import PeftModel
    except ImportError:
        raise MissingDependency("peft", extra="train", why="merging the adapter") from None
    from honed.train.loading import load_base

    t0 = time.perf_counter()
    loaded = load_base(base)
    if getattr(loaded.model, "hf_quantizer", None) is not None or hasattr(loaded.model.config,
                                                                           "quantization_config"):
        raise UserError(f"{base}: the base still carries quantization marks after loading; transformers would "
                        "refuse to save the merged model")
    merged = PeftModel.from_pretrained(loaded.model, str(adapter)).merge_and_unload()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tok = loaded.tokenizer
    if loaded.chat_template and not tok.chat_template:
        tok.chat_template = loaded.chat_template
    tok.save_pretrained(str(tmp))
    write_json_atomic(tmp / STAMP, {"base": base, "base_path": loaded.source, "base_sha256": loaded.sha256,
                                    "adapter": str(adapter), "adapter_sha256": a_sha,
                                    "from_gguf": loaded.from_gguf})
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return Merged(out, loaded.sha256, a_sha, time.perf_counter() - t0, reused=False)

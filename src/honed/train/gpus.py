"""GPU presets for the planner: a small dated table (`resources/gpus.toml`) of memory, bf16 and CUDA support."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from honed.errors import UserError


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator as the planner sees it."""

    name: str
    memory_gb: float
    """Memory as sold, in GB (10^9 bytes)."""
    bf16: bool = True
    """bf16 matmuls (Ampere and later, RDNA 3+); otherwise the planner trains in fp16."""
    cuda: bool = True
    """CUDA present: bitsandbytes' 4-bit (QLoRA) works. False on AMD/ROCm cards."""
    description: str = ""

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1e9)


def load_gpus(path: Path | None = None) -> tuple[dict[str, GpuSpec], str]:
    """The GPU presets (built-in, or a user's copy of the table) and the date of the table."""
    where = str(path) if path else "the built-in GPU table"
    try:
        text = path.read_text(encoding="utf-8") if path else files("honed").joinpath("resources/gpus.toml").read_text()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise UserError(f"GPU table {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: not valid TOML: {exc}") from None
    gpus, errors = {}, []
    for name, row in raw.get("gpus", {}).items():
        unknown = set(row) - {"memory_gb", "bf16", "cuda", "description"}
        if unknown or not isinstance(row.get("memory_gb"), (int, float)):
            errors.append(f"[gpus.{name}]: needs memory_gb (a number)"
                          + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
            continue
        gpus[name] = GpuSpec(name=name, memory_gb=float(row["memory_gb"]), bf16=bool(row.get("bf16", True)),
                             cuda=bool(row.get("cuda", True)), description=str(row.get("description", "")))
    if errors:
        raise UserError(f"{where}: " + "; ".join(errors))
    return gpus, str(raw.get("as_of", "undated"))


def find_gpu(name: str, path: Path | None = None) -> GpuSpec:
    """A preset by name, with the list of names in the error when it is unknown."""
    gpus, _ = load_gpus(path)
    if name not in gpus:
        raise UserError(f"unknown GPU {name!r}: expected one of {', '.join(gpus)} (or give --memory-gb N)")
    return gpus[name]

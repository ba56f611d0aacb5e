"""Multi-GPU training through accelerate: where honed's shipped configs are, and how a rank knows its place.

`honed tune` is a plain TRL recipe, so `accelerate launch` runs it on several GPUs unchanged; what honed adds is
that each rank loads its model onto its own GPU (not `device_map="auto"`, which would spread one copy over all of
them), and that only rank 0 writes the run folder's files.

    python -m honed.train.distributed fsdp   # prints the path of the shipped FSDP config (or: ddp)
"""

from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path

CONFIGS = ("fsdp", "ddp")


def config_path(name: str = "fsdp") -> Path:
    """Path of a shipped accelerate config (`fsdp` or `ddp`)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown accelerate config {name!r}: expected one of {', '.join(CONFIGS)}")
    return Path(str(files("honed") / "resources" / "accelerate" / f"{name}.yaml"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def device_map(cuda: bool) -> str | dict[str, int] | None:
    """One whole copy per rank on its own GPU under accelerate; `auto` for a single process on CUDA."""
    if not cuda:
        return None
    if world_size() > 1:
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return "auto"


if __name__ == "__main__":
    print(config_path(sys.argv[1] if len(sys.argv) > 1 else "fsdp"))

"""Multi-GPU training through accelerate: where honed's shipped configs are, and how a rank knows its place.

`honed tune` is a plain TRL recipe, so `accelerate launch` runs it on several GPUs unchanged; what honed adds is
that each rank loads its model onto its own GPU (not `device_map="auto"`, which would spread one copy over all of
them), and that only rank 0 writes the run folder's files.

    python -m honed.train.distributed fsdp   # prints the path of the shipped FSDP config (or: ddp)

The guardrails under several processes (`guarded_step`, called where honed's loop calls `after_step`): the
validation pass, the choice of the best checkpoint and every file written happen once, on rank 0, and rank 0's
decisions (stop, steps planned, time budget spent) are broadcast, so that no rank leaves the loop while another
waits in a collective.
- DDP (`ddp`): every rank holds a whole copy, so rank 0 validates on its own copy, unwrapped (no collective),
  while the others wait for its decision.
- FSDP (`fsdp`): no rank holds the whole model, and a forward is a collective: every rank runs the validation
  pass in lockstep (same items, greedy: the same forwards), with the root's own parameters unsharded; the adapter
  is gathered to rank 0 as a full state dict before anything is saved (a sharded save would write a shard).
  Only rank 0's run folder is real (the others write to a scratch folder, `honed.train.session.prepare`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from importlib.resources import files
from pathlib import Path
from typing import Any

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


def agree(accelerator: Any, *values: int) -> list[int]:
    """Rank 0's integers on every rank (one broadcast); as given in a single process."""
    if accelerator is None or accelerator.num_processes == 1:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.long, device=accelerator.device)
    dist.broadcast(t, src=0)
    return [int(v) for v in t.tolist()]


def check_world(accelerator: Any) -> None:
    """Refuse a launch where accelerate set up fewer processes than were started: each would train alone, and
    every rank would validate and save (on a CPU accelerate does so unless told `--cpu`)."""
    if accelerator.num_processes != world_size():
        from honed.errors import UserError

        raise UserError(f"{world_size()} processes were launched (WORLD_SIZE) but accelerate set up "
                        f"{accelerator.num_processes}, so each would train alone: launch with `accelerate launch "
                        '--config_file "$(python -m honed.train.distributed ddp)"` (on a CPU add --cpu, or set '
                        "ACCELERATE_USE_CPU=true)")


def is_fsdp(accelerator: Any) -> bool:
    return accelerator is not None and str(getattr(accelerator, "distributed_type", "")).endswith("FSDP")


def guarded_step(accelerator: Any, wrapped: Any, after_step: Callable[[int, bool], bool], step: int,
                 last: bool, eval_every: int) -> bool:
    """`after_step(step, last)` — the guardrails: validation pass, checkpoint choice, saving — on rank 0 (with
    every rank in lockstep under FSDP), and its stop decision on every rank. `wrapped`: the model as
    `accelerator.prepare` returned it."""
    if accelerator is None or accelerator.num_processes == 1:
        return after_step(step, last)
    if is_fsdp(accelerator):
        due = last or step % eval_every == 0  # the same on every rank: `last` is agreed, `step` is shared
        with fsdp_validation(wrapped, accelerator.unwrap_model(wrapped)) if due else nullcontext():
            stop = after_step(step, last)
    else:
        stop = after_step(step, last) if accelerator.is_main_process else False
    return bool(agree(accelerator, int(stop))[0])


@contextmanager
def fsdp_validation(wrapped: Any, inner: Any) -> Iterator[None]:
    """Every rank, around a validation pass under FSDP: the root's own parameters (embeddings, final norm, LM
    head) unsharded so the inner model runs (each wrapped layer gathers its own in its forward, a collective
    that every rank joins in lockstep), and `save_pretrained` of the inner PEFT model writing the adapter
    gathered as a full state dict on rank 0."""
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT,
                              FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
        full = wrapped.state_dict()  # a collective: every rank calls it, rank 0 receives the whole
    adapter = {k: v for k, v in full.items() if "lora_" in k}
    original = inner.save_pretrained
    inner.save_pretrained = lambda path, **kw: original(path, state_dict=adapter, **kw)
    try:
        with FSDP.summon_full_params(wrapped, writeback=False, recurse=False):
            yield
    finally:
        del inner.save_pretrained  # the class's method again


if __name__ == "__main__":
    print(config_path(sys.argv[1] if len(sys.argv) > 1 else "fsdp"))

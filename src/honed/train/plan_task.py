"""`plan(task, model)`: the planner as one stage function — training memory and settings for this task's own
token lengths on a device, and memory to serve each GGUF rung. `honed plan` prints it; `honed.plan` returns it.

The pure math lives in `honed.train.plan` (`plan_training`, `plan_serving`); this module reads what it needs: the
task's train split, the model's architecture (`honed.train.arch`) and the token lengths as training will render
them (`honed.train.tokens`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from honed.backends.models import DEFAULT_MODEL
from honed.errors import UserError
from honed.task.spec import Task, load_task
from honed.train.arch import ModelArch
from honed.train.gpus import GpuSpec
from honed.train.plan import DEFAULT_QUANTS, Plan, ServeMemory


@dataclass(frozen=True)
class TaskPlan:
    """What `honed plan` found: the model, the device, the training plan (every choice with its reason) and the
    memory to serve each rung."""

    model: str
    task: str
    arch: ModelArch
    device: GpuSpec | Literal["cpu"]
    memory_bytes: int | None
    """The device's memory (a preset's, the given --memory-gb, or this machine's RAM for the CPU)."""
    chat: bool
    """Whether the model has a chat template (False: a base model, plain completion prompts)."""
    training: Plan
    serving: list[ServeMemory]
    serving_ctx: int
    serving_parallel: int

    def to_dict(self) -> dict[str, Any]:
        """The plan document `honed plan --json` writes."""
        return {"model": self.model, "task": self.task, "plan": self.training.to_dict(),
                "serving_ctx": self.serving_ctx, "serving_parallel": self.serving_parallel,
                "serving": [{**r.__dict__, "total": r.total} for r in self.serving]}


def plan(task: Task | str | Path, model: str = DEFAULT_MODEL, *, gpu: str | None = None,
         memory_gb: float | None = None, method: str = "auto", ctx: int | None = None, parallel: int = 1,
         quants: tuple[str, ...] | list[str] = DEFAULT_QUANTS, gpu_file: Path | None = None) -> TaskPlan:
    """Plan a fine-tune of `model` on `task`'s train split: memory (training and serving), LoRA vs QLoRA, rank,
    LR, epochs, max length, the adapted layers, entity swaps — with reasons; the settings `honed tune` would choose
    by default, on the prompt it would train on (the task's `tuned_template` when it has one).

    `gpu`: a preset name (`honed.train.gpus`) or "cpu"; `memory_gb` overrides its memory (alone: a CUDA GPU with
    that much). `ctx`: the serving context per request (default: the planned max_length rounded up to 256).
    """
    from honed.task.data import load_items
    from honed.train.arch import read_arch
    from honed.train.gpus import find_gpu
    from honed.train.plan import plan_serving, plan_training
    from honed.train.tokens import token_lengths

    if method not in ("auto", "lora", "qlora"):
        raise UserError(f"--method {method!r}: expected auto, lora or qlora")
    t = task if isinstance(task, Task) else load_task(task)
    items = load_items(t, "train")
    arch = read_arch(model)
    device: GpuSpec | Literal["cpu"] = "cpu"
    memory = int(memory_gb * 1e9) if memory_gb else None
    if gpu and gpu != "cpu":
        device = find_gpu(gpu, gpu_file)
    elif memory_gb and gpu is None:
        device = GpuSpec(name=f"gpu-{memory_gb:g}gb", memory_gb=memory_gb, description="a CUDA GPU")
    if memory is None:  # a preset's memory, or this machine's RAM
        memory = device.memory_bytes if device != "cpu" else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    from honed.train.config import TuneConfig
    from honed.train.plan_defaults import plan_swaps

    t = t.with_prompt("tuned" if t.has_tuned_prompt else "base")  # the prompt `honed tune` trains on by default
    lengths, chat = token_lengths(t, items, model)
    training = plan_training(arch, token_lengths=lengths, device=device, method=method,  # type: ignore[arg-type]
                             memory_bytes=memory, model_name=model, swaps=plan_swaps(t, TuneConfig(), len(items)))
    n_ctx = ctx or max(256, -(-training.max_length.value // 256) * 256)
    serving = plan_serving(arch, [q.strip() for q in quants if q.strip()], n_ctx=n_ctx, n_parallel=parallel,
                           on_gpu=device != "cpu", memory_bytes=memory)
    return TaskPlan(model=model, task=t.name, arch=arch, device=device, memory_bytes=memory, chat=chat,
                    training=training, serving=serving, serving_ctx=n_ctx, serving_parallel=parallel)

"""`honed plan`: memory and hyperparameters for fine-tuning a model on a task, and memory to serve it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from honed.backends.models import DEFAULT_MODEL

out = Console()


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f}"


def plan_command(
    task: Annotated[Path, typer.Argument(help="Task folder (holding honed.toml) or the honed.toml file.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Alias (see `honed models`), .gguf path or HF "
                                       "checkpoint folder.")] = DEFAULT_MODEL,
    gpu: Annotated[str | None, typer.Option(help="GPU preset (e.g. rtx-4090-24gb; an unknown name lists them), "
                                               "or 'cpu'.")] = None,
    memory_gb: Annotated[float | None, typer.Option(min=0.1, help="Device memory in GB: overrides the preset; "
                                                       "alone, a CUDA GPU with this much memory.")] = None,
    method: Annotated[str, typer.Option(help="auto | lora | qlora")] = "auto",
    ctx: Annotated[int | None, typer.Option(min=64, help="Serving context per request (default: the planned "
                                               "max_length, rounded up to 256).")] = None,
    parallel: Annotated[int, typer.Option(min=1, help="Requests served at once (KV cache per slot).")] = 1,
    quants: Annotated[str, typer.Option(help="Comma-separated GGUF types for the serving table.")]
    = "F16,Q8_0,Q6_K,Q5_K_M,Q4_K_M",
    gpu_file: Annotated[Path | None, typer.Option(help="Your own GPU table (TOML, as resources/gpus.toml).")]
    = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the plan document here.")] = None,
) -> None:
    """Plan a fine-tune: memory (training and serving), LoRA vs QLoRA, rank, LR, epochs, max length — with reasons."""
    from honed.store import write_json_atomic
    from honed.train.plan_task import plan as plan_task

    p = plan_task(task, model, gpu=gpu, memory_gb=memory_gb, method=method, ctx=ctx, parallel=parallel,
                  quants=quants.split(","), gpu_file=gpu_file)
    arch, device, memory, plan, chat = p.arch, p.device, p.memory_bytes, p.training, p.chat
    n_ctx, serving = p.serving_ctx, p.serving

    where = "CPU" if device == "cpu" else f"{device.name} ({device.description})"
    out.print(f"[bold]{model}[/] · {arch.n_params:,} parameters · {arch.n_layers} layers, {arch.n_heads} heads "
              f"({arch.n_kv_heads} KV) · on {where}, {_gb(memory) + ' GB' if memory else 'memory unknown'}",
              highlight=False)
    s = plan.lengths
    out.print(f"train split: {s.n} examples · prompt tokens p50 {s.prompt_p50}, p95 {s.prompt_p95}, max "
              f"{s.prompt_max} · answer tokens p50 {s.completion_p50}, max {s.completion_max}"
              + ("" if chat else " · [yellow]no chat template: plain completion prompt[/]"), highlight=False)

    mem = Table(title="Training memory (GB, peak of one step)", title_justify="left")
    mem.add_column("component")
    for opt in plan.options:
        mem.add_column(opt.label + (" ◀" if opt == plan.memory else ""), justify="right")
    for row in ("weights", "adapter", "activations", "logits", "overhead", "total"):
        mem.add_row(row, *(_gb(getattr(o, row)) for o in plan.options), style="bold" if row == "total" else None)
    out.print(mem)
    colour = {"fits": "green", "tight": "yellow", "does not fit": "red"}.get(plan.fit, "white")
    out.print(f"→ [{colour}]{plan.fit}[/]: {plan.memory.label} at {plan.memory.micro_batch} × {plan.memory.seq_len} "
              f"tokens needs {_gb(plan.memory.total)} GB", highlight=False)

    choices = Table(title="Recommendation", title_justify="left", show_lines=True)
    choices.add_column("setting")
    choices.add_column("value")
    choices.add_column("why", ratio=1)
    for name, c in plan.choices():
        value = ", ".join(c.value) if isinstance(c.value, list) else f"{c.value:g}" if isinstance(c.value, float) \
            else "every layer" if name == "top_layers" and c.value is None else str(c.value)
        choices.add_row(name, value, escape(c.reason))
    out.print(choices)
    for note in plan.notes:
        out.print(f"[dim]• {escape(note)}[/]", highlight=False)

    serve = Table(title=f"Serving with llama.cpp (GB; context {n_ctx} × {parallel})", title_justify="left")
    for col in ("quant", "bits/weight", "weights", "KV cache", "compute", "overhead", "total", "fit"):
        serve.add_column(col, justify="left" if col in ("quant", "fit") else "right")
    for r in serving:
        serve.add_row(r.quant, f"{r.bits_per_weight:.2f}", _gb(r.weights), _gb(r.kv_cache), _gb(r.compute),
                      _gb(r.overhead), _gb(r.total), r.fit)
    out.print(serve)
    if json_out:
        write_json_atomic(json_out, p.to_dict())
        out.print(f"[dim]wrote {json_out}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)

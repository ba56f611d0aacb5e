"""`honed demo`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from honed.backends.models import DEFAULT_MODEL

out = Console()


def demo_command(
    task: Annotated[Path | None, typer.Option(help="Task folder (default: the bundled examples/classify).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Base model: alias or .gguf.")] = DEFAULT_MODEL,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the package and report go.")] = Path("demo-out"),
    time_budget: Annotated[str, typer.Option(help="Training time, validation included (600, 8m, ...); the steps "
                                              "follow from the measured step time.")] = "8m",
    max_steps: Annotated[Optional[int], typer.Option(help="Training steps at most (also bounded by the time "
                                                      "budget; early stopping may end sooner).")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Steps between validation passes (default: planned, "
                                                       "~3 per epoch).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the run's figures here (per-stage "
                                                     "seconds, metrics with CIs, gate, shipped rung).")] = None,
) -> None:
    """The whole loop on the embedded model: base eval → tune → gate → export (F16, Q8_0, Q4_K_M) → report."""
    from honed.demo import demo, figures
    from honed.store import write_json_atomic
    from honed.train.config import parse_duration

    try:
        budget = parse_duration(time_budget)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--time-budget") from None
    t0 = time.perf_counter()
    res = demo(task_dir=task, model=model, out=out_dir, time_budget=budget, max_steps=max_steps,
               eval_every=eval_every,
               say=lambda m: out.print(m, highlight=False, markup=False))  # stage text names TOML tables
    g = res.gate
    metric = g["primary_metric"]

    def ci(v: list[float] | None) -> str:
        return f"[{v[0]:.3f}, {v[1]:.3f}]" if v else "—"

    out.print(f"\n[bold]{metric} on the locked test[/] ({g['n_items']} items)", highlight=False)
    out.print(f"  base  (GGUF)          {res.base.metrics.get(metric):.3f}", highlight=False)
    out.print(f"  base  (transformers)  {g['base']['value']:.3f}  95% CI {ci(g['base'].get('ci'))}", highlight=False)
    out.print(f"  tuned (transformers)  {g['tuned']['value']:.3f}  95% CI {ci(g['tuned'].get('ci'))}", highlight=False)
    for rung in (res.ladder or {}).get("rungs", []):
        out.print(f"  tuned {rung['quant']:<7} (GGUF)  {rung['metric']:.3f}  95% CI {ci(rung.get('ci'))}  "
                  f"P95 {rung.get('p95_ms')} ms", highlight=False)
    out.print(f"\ngate: [bold]{g['status']}[/]", highlight=False)
    if res.package:
        out.print(f"package: {res.package} (recommended rung: {(res.ladder or {}).get('recommended')})",
                  highlight=False)
    out.print(f"report:  {res.report}\nwall time: {time.perf_counter() - t0:.0f} s "
              f"({', '.join(f'{k} {v:.0f} s' for k, v in res.seconds.items())})", highlight=False)
    if json_out:
        doc = figures(res, metric)
        doc["seconds"]["wall"] = round(time.perf_counter() - t0, 1)
        write_json_atomic(json_out, doc)
        out.print(f"figures: {json_out}", highlight=False)
    if res.package is None:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)

"""`honed export RUN`: merge, GGUF, quant ladder, template round trip, Modelfile, delivery package."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from honed.display import fmt, fmt_ci
from honed.store import resolve_run_dir

out = Console()
err = Console(stderr=True)


def export_command(
    run: Annotated[str, typer.Argument(help="Tune run: id, unique id prefix, or run folder (gated by `honed gate`).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Package folder (default: RUN/package).")] = None,
    quants: Annotated[str, typer.Option("--quants", help="Rungs below F16, comma-separated.")] = "Q8_0,Q4_K_M",
    force: Annotated[bool, typer.Option("--force", help="Export even when the gate failed or never ran "
                                        "(recorded in the manifest).")] = False,
    modelfile: Annotated[Path | None, typer.Option("--modelfile", help="Your own Ollama Modelfile instead of "
                                                      "the generated one (checked by the same round trip).")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Version in file names (default: the "
                                                   "adapter's sha256 prefix).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the package manifest as JSON.")] = False,
) -> None:
    """Merge the adapter, convert to GGUF, quantize a ladder, re-evaluate every rung, check the template round
    trip, write the Modelfile and the delivery package."""
    from honed.exporting.export import export
    from honed.tracking import log_stage

    t0 = time.perf_counter()
    last = [t0]

    def stage(msg: str) -> None:
        now = time.perf_counter()
        err.print(f"[dim]{now - t0:6.1f}s[/] [bold]export[/] {escape(msg)}", highlight=False)
        last[0] = now

    pkg = export(resolve_run_dir(run), out=out_dir, quants=[q.strip() for q in quants.split(",") if q.strip()], force=force,
                 modelfile=modelfile, version=version, on_stage=stage)
    log_stage("export", pkg.root)
    m = pkg.manifest
    if json_out:
        print(json.dumps(m.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    metric = m.acceptance.primary_metric
    table = Table("rung", metric, "95% CI", "P50 ms", "P95 ms", "peak MB", "$/1K", "agrees w/ merged", "MiB",
                  title=f"quant ladder · {m.task} · locked test", title_justify="left")
    for r in m.rungs:
        x = r.metrics
        agree = x.get("agreement_with_merged")
        table.add_row(r.quant + (" ★" if r.quant == m.recommended else ""), fmt(x.get("metric")),
                      fmt_ci(x.get("ci")), fmt(x.get("p50_ms"), 1), fmt(x.get("p95_ms"), 1),
                      fmt(x.get("peak_memory_mb"), 0), fmt(x.get("cost_per_1k"), 4),
                      "n/a" if agree is None else f"{agree:.0%}", fmt(x.get("size_mb"), 0))
    out.print(table)
    ladder = getattr(m, "ladder", {}) or {}
    out.print(f"recommended: [bold]{m.recommended}[/] — {escape(ladder.get('why', ''))}", highlight=False)
    if m.gate.get("forced"):
        out.print(f"[bold yellow]forced[/]: the gate was {m.gate.get('overrode')}; recorded in the manifest",
                  highlight=False)
    ollama = getattr(m, "ollama", {}) or {}
    if ollama.get("created"):
        out.print(f"ollama: created [bold]{ollama['name']}[/]", highlight=False)
    else:
        out.print(f"ollama: not created ({ollama.get('reason', ollama.get('output'))}); {ollama.get('how')}",
                  highlight=False)
    out.print(f"package: {pkg.root}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)

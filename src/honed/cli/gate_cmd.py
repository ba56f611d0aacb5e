"""`honed gate RUN`: PASS or FAIL, with each check's reason. Exit 0 on PASS, 1 on FAIL, 2 on bad input."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from honed.display import fmt, fmt_ci
from honed.store import resolve_run_dir

out = Console()
err = Console(stderr=True)


def _table(doc: dict[str, Any]) -> Table:
    status = doc["status"]
    colour = "green" if status == "PASS" else "red"
    rel = doc["relative_improvement"]
    rel_ci = doc["relative_improvement_ci"]
    title = (f"[bold {colour}]{status}[/] · {doc['task']} · {doc['primary_metric']} on {doc['n_items']} locked test "
             f"items: base {fmt(doc['base']['value'])} → tuned {fmt(doc['tuned']['value'])} "
             f"(difference {fmt(doc['difference'], signed=True)}, 95% CI {fmt_ci(doc['difference_ci'], signed=True)}, "
             f"p = {fmt(doc['p_value'], 4)}"
             + (f"; relative {rel:+.1%}, CI [{rel_ci[0]:+.1%}, {rel_ci[1]:+.1%}]" if rel is not None and rel_ci
                else "; relative improvement undefined (base 0)") + ")")
    table = Table("check", "result", "reason", title=title, title_justify="left", show_lines=True)
    for c in doc["checks"]:
        table.add_row(c["name"], "[bold green]PASS[/]" if c["passed"] else "[bold red]FAIL[/]", escape(c["detail"]))
    return table


def gate_command(
    run: Annotated[str, typer.Argument(help="Tune run: id, unique id prefix, or run folder.")],
    vs: Annotated[str | None, typer.Option("--vs", help="Also compare with this eval or bake-off arm run (id "
                                              "or folder) on the same test items; fails only if it is "
                                              "significantly better.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N test items (a quick look; the "
                                                 "CI shows how weak the verdict is).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print gate.json to stdout instead of the table.")]
    = False,
) -> None:
    """Tuned vs base on the locked test, paired: improvement with a CI, forgetting, collapse, latency."""
    from honed.gating import gate
    from honed.tracking import log_stage

    run_dir = resolve_run_dir(run, "run")
    vs_dir = resolve_run_dir(vs, "arm run") if vs else None
    result = gate(run_dir, vs=vs_dir, limit=limit, progress=not json_out,
                  on_stage=lambda msg: err.print(f"[dim]{escape(msg)}[/]", highlight=False))
    log_stage("gate", run_dir)
    if json_out:
        print(json.dumps(result.doc, indent=2, ensure_ascii=False, default=str))
    else:
        out.print(_table(result.doc))
        out.print(f"[dim]wrote {result.path}[/]", highlight=False)
        if result.passed:
            out.print(f"next: honed export {run_dir}", highlight=False)
        else:
            out.print("[bold red]FAIL[/]: " + "; ".join(c.name for c in result.document.failed_checks)
                      + " — export refuses this run unless forced", highlight=False)
    if not result.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("gate")(gate_command)

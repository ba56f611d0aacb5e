"""`honed monitor LOG --package P`: anchors, drift, shadow comparison and routing economics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

out = Console()


def monitor_command(
    log: Annotated[Path, typer.Argument(help="Request log (JSONL) that `honed serve` appends to.")],
    package: Annotated[Path, typer.Option("--package", "-p", help="The delivery package that is being served.")],
    candidate: Annotated[str | None, typer.Option(help="Shadow-compare this model (alias, .gguf path or "
                                                     "package folder) with the package's on logged inputs.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Ask a running server (OpenAI-compatible base URL, "
                                                    "e.g. http://127.0.0.1:8000/v1) instead of loading the "
                                                    "package's model in-process.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for report.md/.html/.json "
                                                    "(default: a run folder under $HONED_HOME).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of Markdown.")] = False,
    requests_per_day: Annotated[float | None, typer.Option(min=0.0, help="Volume for the economics "
                                                              "(default: extrapolated from the log's span).")] = None,
    window: Annotated[str | None, typer.Option(help="Time window for the escalation trend, e.g. 1h, 1d "
                                                  "(default: up to 8 equal windows).")] = None,
    hardware: Annotated[str, typer.Option(help="Hardware profile of the local model (honed.cost).")] = "cpu-2core-vm",
    cloud_model: Annotated[str | None, typer.Option(help="Priced cloud model of the fallback (default: the "
                                                       "fallback's own model if priced, else the cheapest).")] = None,
    shadow_sample: Annotated[int, typer.Option(min=1, help="Logged inputs the shadow comparison uses.")] = 50,
    length_reference: Annotated[str, typer.Option(help="eval | first-window: what output lengths are compared "
                                                  "with.")] = "eval",
) -> None:
    """Check a served package from its request log. Exit 1 when an anchor FAILs or any drift is flagged."""
    from pydantic import ValidationError

    from honed.errors import UserError
    from honed.monitor import MonitorConfig, monitor

    try:
        cfg = MonitorConfig(hardware=hardware, cloud_model=cloud_model, shadow_sample=shadow_sample,
                            length_reference=length_reference)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise UserError(f"--length-reference {length_reference!r}: expected eval or first-window "
                        f"({exc.errors()[0]['msg']})") from None
    report = monitor(log, package, candidate=candidate, endpoint=endpoint, window=window, out=out_dir,
                     requests_per_day=requests_per_day, config=cfg, progress=not json_out)
    if json_out:
        print(json.dumps(report.doc, indent=2, ensure_ascii=False, default=str))
    else:
        text = report.files["md"].read_text(encoding="utf-8")
        if out.is_terminal:
            from rich.markdown import Markdown

            out.print(Markdown(text))
        else:
            print(text)
        out.print(f"[dim]report: {report.files['html']}[/]", highlight=False)
    raise typer.Exit(1 if report.flagged else 0)


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_command)

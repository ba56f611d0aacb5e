"""`honed verify PACKAGE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

out = Console()


def _short(value: object, limit: int = 60) -> str:
    text = str(value).replace("\n", "⏎")
    return text if len(text) <= limit else text[:limit] + "…"


def verify_command(
    package: Annotated[Path, typer.Argument(help="Package folder written by `honed export`.")],
    quant: Annotated[Optional[str], typer.Option(help="Rung to re-run the anchors on (default: the recommended "
                                                 "one).")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help="llamacpp | transformers")] = "llamacpp",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")] = False,
) -> None:
    """Re-check every file's sha256 against the manifest, the locked test set, and re-run the anchor items:
    PASS (exit 0) only if every hash matches and every anchor answers as at export, else FAIL (exit 1)."""
    from honed.exporting.verify import result_json, verify

    result = verify(package, backend=backend, quant=quant)
    if json_out:
        print(result_json(result))
        raise typer.Exit(0 if result.passed else 1)
    if result.files or result.problems:
        problems = Table("file", "problem", title="problems", title_justify="left")
        for f in result.files:
            problems.add_row(f.file, f"{f.issue}: {f.detail}" if f.issue == "changed" else f.issue)
        for p in result.problems:
            problems.add_row("", p)
        out.print(problems)
    if result.anchors:
        anchors = Table("anchor", "expected", "at export", "now", "same", "correct",
                        title=f"anchors through {result.gguf}", title_justify="left")
        for a in result.anchors:
            anchors.add_row(a.id, _short(a.expected), _short(a.recorded), _short(a.answer if a.answer is not None
                                                                                  else a.text),
                            "yes" if a.matches else "[bold red]NO[/]", "yes" if a.correct else "no")
        out.print(anchors)
        acc = result.anchor_accuracy
        out.print(f"{sum(a.matches for a in result.anchors)}/{len(result.anchors)} anchors answer as at export; "
                  f"accuracy vs expected {acc:.3f}" if acc is not None else "", highlight=False)
    verdict = "[bold green]PASS[/]" if result.passed else "[bold red]FAIL[/]"
    out.print(f"{verdict} {result.package}", highlight=False)
    raise typer.Exit(0 if result.passed else 1)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)

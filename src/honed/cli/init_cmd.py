"""`honed init DIR --from FILE`: a task folder from a data file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

out = Console()


def init_command(
    folder: Annotated[Path, typer.Argument(help="The task folder to create (honed.toml and data/ go in it).")],
    source: Annotated[Path, typer.Option("--from", help="Data file: JSONL, CSV, TSV, Parquet, Arrow, or a datasets "
                                         "save_to_disk folder.")],
    kind: Annotated[str, typer.Option(help="Task kind (classify).")] = "classify",
    input_field: Annotated[str, typer.Option("--input", help="Column holding the text to classify.")] = "text",
    label_field: Annotated[str, typer.Option("--label", help="Column holding the label.")] = "label",
    none_label: Annotated[str | None, typer.Option("--none-label", help="The label value that means 'none of "
                                                   "them' (e.g. NONE): the task's none_label.")] = None,
    name: Annotated[str | None, typer.Option(help="Task name (default: the folder's name).")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl | csv | tsv | parquet | arrow (default: "
                                            "from the extension).")] = None,
    ratios: Annotated[str, typer.Option(help="train,val,test fractions.")] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Shuffle seed of the split.")] = 0,
    force: Annotated[bool, typer.Option(help="Overwrite an existing honed.toml.")] = False,
) -> None:
    """Write honed.toml from a data file (labels found in it, a prompt listing them), import and split the data
    with the test set locked, and print the next commands."""
    from honed.data.split import parse_ratios
    from honed.task.scaffold import init_task

    r = init_task(folder, source, kind=kind, input_field=input_field, label_field=label_field, none_label=none_label,
                  name=name, fmt=fmt, ratios=parse_ratios(ratios), seed=seed, force=force)
    shown = ", ".join(r.labels[:5]) + (", …" if len(r.labels) > 5 else "")
    out.print(f"wrote {r.task_file}: {len(r.labels)} labels ({escape(shown)})"
              + (f", none_label {escape(r.none_label)}" if r.none_label else ""), highlight=False)
    out.print("data: " + ", ".join(f"{split} {n}" for split, n in r.counts.items()) + f" items; test set locked "
              f"({r.lock_file})" + (f"; {r.dropped} left out" if r.dropped else ""), highlight=False)
    quick = min(100, r.counts.get("test", 0))
    out.print(f"next:\n  honed eval {folder} --limit {quick}    # the base model on {quick} locked test items "
              f"(drop --limit for all {r.counts.get('test', 0)})\n"
              f"  honed tune {folder}    # fine-tune on the train split; it prints the run folder\n"
              "  honed gate RUN    # tuned vs base on the locked test (RUN: the folder tune printed)",
              highlight=False)


def register(app: typer.Typer) -> None:
    app.command("init")(init_command)

"""`honed data …`: build task folders from data sets."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_DATA_DIR_HELP = (
    "Folder holding banking77/ and restaurant8k/ "
    "(default: $HONED_SHARED_DATA, else ../shared/data, else /work/shared/data)."
)

app = typer.Typer(help="Build honed task folders from data sets.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    # A callback keeps `public` a sub-command even while it is the group's only command.
    pass


class PublicSet(StrEnum):
    banking77_none = "banking77-none"
    restaurant8k = "restaurant8k"


@app.command()
def public(
    name: Annotated[PublicSet, typer.Argument(help="Which public data set to turn into a task.")],
    out: Annotated[Path, typer.Option("--out", help="Task folder to write (created if missing).")],
    seed: Annotated[int, typer.Option(help="Sampling seed: same seed, same files.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help=_DATA_DIR_HELP)] = None,
    labels: Annotated[int, typer.Option(help="banking77-none: intents kept as labels.")] = 10,
    none_intents: Annotated[int, typer.Option(help="banking77-none: intents held out as NONE.")] = 4,
    train_per_label: Annotated[int, typer.Option(help="banking77-none: train+val messages per label.")] = 30,
    test_per_label: Annotated[int, typer.Option(help="banking77-none: test messages per label.")] = 15,
    train_size: Annotated[int, typer.Option(help="restaurant8k: train+val examples (20% go to val).")] = 400,
    test_size: Annotated[int, typer.Option(help="restaurant8k: test examples.")] = 150,
) -> None:
    """Write a task folder (honed.toml, data/*.jsonl, SOURCE.txt) from a public data set."""
    from honed.data.public import banking77_none, restaurant8k
    from honed.task import load_items, load_task

    if name is PublicSet.banking77_none:
        folder = banking77_none(
            out,
            data_dir=data_dir,
            n_labels=labels,
            n_none=none_intents,
            train_per_label=train_per_label,
            test_per_label=test_per_label,
            seed=seed,
        )
    else:
        folder = restaurant8k(out, data_dir=data_dir, train_size=train_size, test_size=test_size, seed=seed)
    task = load_task(folder)
    counts = {split: len(load_items(task, split)) for split in ("train", "val", "test")}
    Console().print(
        f"[bold]{task.name}[/bold] ({task.kind}) written to {folder}: "
        + ", ".join(f"{split} {n}" for split, n in counts.items())
        + " items"
    )

"""`honed data …`: import, inspect, split and lock, generate, filter, harvest and check a task's data."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from honed.backends.models import DEFAULT_MODEL

_FROM_HELP = (
    "Folder holding the public data sets as PolyAI publishes them: banking77/ (categories.json, train.csv, "
    "test.csv) and restaurant8k/ (train_0.json, test.json). Required."
)
_TASK = typer.Argument(help="Task folder (holding honed.toml) or the honed.toml file.")

app = typer.Typer(
    help="Import, split and lock, generate, filter, harvest and check a task's data.", no_args_is_help=True
)
out = Console()


@app.callback()
def _group() -> None:
    pass


def _write_json(path: Path | None, doc: Any) -> None:
    if path is not None:
        from honed.store import write_json_atomic

        write_json_atomic(path, doc)
        out.print(f"[dim]wrote {path}[/]", highlight=False)


class PublicSet(StrEnum):
    banking77_none = "banking77-none"
    restaurant8k = "restaurant8k"


@app.command()
def public(
    name: Annotated[PublicSet, typer.Argument(help="Which public data set to turn into a task.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Task folder to write (created if missing).")],
    seed: Annotated[int, typer.Option(help="Sampling seed: same seed, same files.")] = 0,
    data_dir: Annotated[Path | None, typer.Option("--from", help=_FROM_HELP)] = None,
    labels: Annotated[int, typer.Option(help="banking77-none: intents kept as labels.")] = 10,
    none_intents: Annotated[int, typer.Option(help="banking77-none: intents held out as NONE.")] = 4,
    train_per_label: Annotated[int, typer.Option(help="banking77-none: train+val messages per label.")] = 30,
    test_per_label: Annotated[int, typer.Option(help="banking77-none: test messages per label.")] = 15,
    train_size: Annotated[int, typer.Option(help="restaurant8k: train+val examples (20% go to val).")] = 400,
    test_size: Annotated[int, typer.Option(help="restaurant8k: test examples.")] = 150,
) -> None:
    """Write a task folder (honed.toml, data/*.jsonl, SOURCE.txt) from a public data set."""
    from honed.data.public import banking77_none, expected_files, restaurant8k
    from honed.errors import DataError
    from honed.task import load_items, load_task

    if data_dir is None:  # not a required typer option: the error says what the folder must hold
        dataset = "banking77" if name is PublicSet.banking77_none else "restaurant8k"
        raise DataError(f"honed data public {name.value} needs --from DIR, the folder that holds "
                        f"{expected_files(dataset)} "
                        "(honed ships no data and knows no default place for it)")
    if name is PublicSet.banking77_none:
        folder = banking77_none(
            out_dir,
            data_dir=data_dir,
            n_labels=labels,
            n_none=none_intents,
            train_per_label=train_per_label,
            test_per_label=test_per_label,
            seed=seed,
        )
    else:
        folder = restaurant8k(
            out_dir, data_dir=data_dir, train_size=train_size, test_size=test_size, seed=seed
        )
    task = load_task(folder)
    counts = {split: len(load_items(task, split)) for split in ("train", "val", "test")}
    out.print(
        f"[bold]{task.name}[/bold] ({task.kind}) written to {folder}: "
        + ", ".join(f"{split} {n}" for split, n in counts.items())
        + " items"
    )


@app.command("import")
def import_cmd(
    task: Annotated[Path, _TASK],
    source: Annotated[Path, typer.Argument(help="JSONL, CSV, TSV, Parquet or Arrow file, a datasets save_to_disk "
                                           "folder, or hf:OWNER/NAME[:SPLIT] where the hub is reachable.")],
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="TASK_FIELD=SOURCE_FIELD (repeatable), e.g. --map text=message --map expected=label.",
        ),
    ] = None,
    labels: Annotated[
        list[str] | None, typer.Option("--label", help="Rename a label: OLD=NEW (repeatable).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl | csv | tsv | parquet | arrow | hf (default: from the "
                                 "extension; a folder is arrow).")
    ] = None,
    id_prefix: Annotated[
        str | None,
        typer.Option(help="Id of rows without one: PREFIX + line number (default: the file's name)."),
    ] = None,
    to: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the items (default: <task>/data/imported.jsonl)."),
    ] = None,
) -> None:
    """Import a JSONL/CSV/Parquet file or a datasets folder into the task's item format, checking every row (all
    errors at once)."""
    from honed.data.io import import_items, parse_mapping, write_items
    from honed.task.spec import load_task

    t = load_task(task)
    items = import_items(
        t,
        source,
        mapping=parse_mapping(mapping or []),
        fmt=fmt,
        label_map=parse_mapping(labels or [], "--label"),
        id_prefix=id_prefix,
    )
    dest = to or t.root / "data" / "imported.jsonl"
    write_items(t, dest, items)
    out.print(
        f"imported {len(items)} items into {dest}; next: honed data split {task} --input {dest}",
        highlight=False,
    )


@app.command()
def stats(
    task: Annotated[Path, _TASK],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the statistics here.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Planned completion budget (default: the task's max_tokens).")
    ] = None,
) -> None:
    """Items per split and class, lengths, duplicates, the lock, and warnings about the training data."""
    from honed.data.stats import dataset_stats, stats_tables
    from honed.task.spec import load_task

    doc = dataset_stats(load_task(task), max_completion_tokens=max_tokens)
    for renderable in stats_tables(doc):
        out.print(renderable)
    _write_json(json_out, doc)


@app.command()
def split(
    task: Annotated[Path, _TASK],
    inputs: Annotated[
        list[Path] | None,
        typer.Option("--input", help="Item files to add to the pool (repeatable; JSONL/CSV, see --map)."),
    ] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="Field mapping for --input files.")
    ] = None,
    ratios: Annotated[str, typer.Option(help="TRAIN/VAL/TEST proportions.")] = "80/10/10",
    seed: Annotated[int, typer.Option(help="Shuffle seed: same items and seed, same split.")] = 0,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.05, max=1.0, help="Near-duplicate Jaccard threshold: near duplicates stay in one split."
        ),
    ] = 0.7,
    relock: Annotated[bool, typer.Option(help="Accept the test file as it is now and re-lock it.")] = False,
    resplit: Annotated[
        bool, typer.Option(help="Redraw the test set too (needs --relock once locked).")
    ] = False,
) -> None:
    """Stratified train/val/test split; the test set is locked by content hash (later: train/val only)."""
    from honed.data.io import parse_mapping
    from honed.data.split import parse_ratios, split_task
    from honed.task.spec import load_task

    report = split_task(
        load_task(task),
        inputs or [],
        ratios=parse_ratios(ratios),
        seed=seed,
        threshold=threshold,
        relock=relock,
        resplit=resplit,
        mapping=parse_mapping(mapping or []),
        progress=True,
    )
    for name, counts in report.counts.items():
        out.print(
            f"{name:5s} {sum(counts.values()):5d}  " + ", ".join(f"{k} {v}" for k, v in counts.items()),
            highlight=False,
        )
    words = {"created": "locked", "kept": "kept as locked", "relocked": "re-locked"}
    out.print(f"test set {words[report.locked]}: {report.lock_file}", highlight=False)
    if report.groups_kept_together:
        out.print(f"{report.groups_kept_together} group(s) of near duplicates kept within one split")
    for item_id, why in report.dropped[:20]:
        out.print(f"[yellow]left out[/] {item_id}: {escape(why)}", highlight=False)
    if len(report.dropped) > 20:
        out.print(f"[yellow]… and {len(report.dropped) - 20} more left out[/]")


@app.command()
def check(
    task: Annotated[Path, _TASK],
    threshold: Annotated[
        float, typer.Option(min=0.05, max=1.0, help="Near-duplicate Jaccard threshold.")
    ] = 0.7,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Find exact and near duplicates across splits (contamination); verify the lock. Exit 1 on issues."""
    from honed.data.check import check_tables, check_task
    from honed.task.spec import load_task

    doc = check_task(load_task(task), threshold, progress=True)
    for renderable in check_tables(doc):
        out.print(renderable)
    _write_json(json_out, doc)
    if not doc["ok"]:
        raise typer.Exit(1)


@app.command("generate")
def generate_cmd(
    task: Annotated[Path, _TASK],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Teacher: alias, .gguf path, HF folder or served model name.")
    ] = DEFAULT_MODEL,
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="llamacpp | openai | ollama | transformers")
    ] = "llamacpp",
    base_url: Annotated[str | None, typer.Option(help="Server URL for openai/ollama backends.")] = None,
    seeds: Annotated[
        Path | None, typer.Option(help="Seed examples (task JSONL; default: the train split).")
    ] = None,
    docs: Annotated[
        list[Path] | None, typer.Option("--docs", help="Source documents (plain text; repeatable).")
    ] = None,
    n: Annotated[int, typer.Option(min=1, help="Inputs to write (documents: chunks to use).")] = 20,
    k: Annotated[int, typer.Option(min=1, help="Answers per input (self-consistency).")] = 3,
    m: Annotated[int, typer.Option(min=1, help="Answers that must agree.")] = 2,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="Labelling temperature.")] = 0.7,
    seed: Annotated[int, typer.Option(help="Base seed.")] = 0,
    threshold: Annotated[float, typer.Option(min=0.05, max=1.0, help="Near-duplicate threshold.")] = 0.7,
    repair: Annotated[bool, typer.Option(help="One round of repair with the rejection reason.")] = False,
    verbatim: Annotated[
        bool, typer.Option(help="Documents: chunks are the inputs; the teacher only labels.")
    ] = False,
    constrained: Annotated[
        bool, typer.Option(help="Constrain the teacher's answers to the answer space.")
    ] = False,
    to: Annotated[Path | None, typer.Option("--out", help="Also write the kept items here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the survival table here.")] = None,
) -> None:
    """A teacher writes new examples from seeds or documents; filters keep the good ones (survival table)."""
    from honed.backends import open_backend
    from honed.data.generate import generate, generate_config
    from honed.task.data import load_items
    from honed.task.spec import load_task

    t = load_task(task)
    seed_items = (
        load_items(t, "seeds", path=seeds)
        if seeds
        else (load_items(t, "train") if t.spec.data.train and t.split_path("train").exists() else [])
    )
    cfg = generate_config(
        n=n,
        k=k,
        min_agree=m,
        temperature=temperature,
        seed=seed,
        threshold=threshold,
        repair=repair,
        verbatim=verbatim,
        constrained=constrained,
    )
    options = {"base_url": base_url} if base_url else {}
    with open_backend(backend, model, **options) as be:
        result = generate(t, be, seeds=seed_items, documents=docs or [], config=cfg, progress=True, out=to)
    out.print(result.survival.table(f"{t.name}: generated → kept"))
    if result.survival.classes:
        out.print("kept per class: " + ", ".join(f"{c} {n}" for c, n in result.survival.classes.items()))
    for warning in result.survival.warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    out.print(f"[dim]run folder: {result.run_dir}[/]", highlight=False)
    if to:
        out.print(f"wrote {len(result.kept)} kept items to {to}", highlight=False)
    _write_json(json_out, result.survival.to_json())


@app.command("filter")
def filter_cmd(
    task: Annotated[Path, _TASK],
    source: Annotated[Path, typer.Argument(help="Items (task JSONL) or a generate run's candidates.jsonl.")],
    m: Annotated[int, typer.Option(min=1, help="Answers that must agree (candidates with k answers).")] = 1,
    threshold: Annotated[float, typer.Option(min=0.05, max=1.0, help="Near-duplicate threshold.")] = 0.7,
    to: Annotated[Path | None, typer.Option("--out", help="Write the kept items here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the survival table here.")] = None,
) -> None:
    """Run the filters (validity, near duplicates of the data, schema, agreement, grounding) on a file."""
    from honed.data.generate import filter_file
    from honed.task.spec import load_task

    items, survival, _ = filter_file(load_task(task), source, min_agree=m, threshold=threshold, out=to)
    out.print(survival.table(f"{source.name}: in → kept"))
    if to:
        out.print(f"wrote {len(items)} kept items to {to}", highlight=False)
    _write_json(json_out, survival.to_json())


@app.command()
def harvest(
    task: Annotated[Path, _TASK],
    log: Annotated[Path, typer.Argument(help="Request log (JSONL written by `honed serve`).")],
    rules: Annotated[Path | None, typer.Option(help="Rules file (TOML with \\[\\[rule]] entries).")] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--rule",
            help="USE[ label=VALUE]: CONDITION, e.g. "
            "'train: downstream_confirmed == true' (repeatable, after "
            "the file's rules).",
        ),
    ] = None,
    oversample: Annotated[
        list[str] | None, typer.Option(help="CLASS=FACTOR, e.g. NONE=2 (repeatable).")
    ] = None,
    default: Annotated[str | None, typer.Option(help="Records no rule matches: drop | edge.")] = None,
    to: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: <task>/data/harvest).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for fractional oversampling.")] = 0,
) -> None:
    """Training examples and held-out edge cases from a request log, by rules over confidence signals."""
    from honed.data.harvest import build_rules, harvest_table, write_harvest
    from honed.data.harvest import harvest as run_harvest
    from honed.data.io import parse_mapping
    from honed.task.spec import load_task

    t = load_task(task)
    cfg = build_rules(rules, rule or [], parse_mapping(oversample or [], "--oversample"), default)
    result = run_harvest(t, log, cfg, seed=seed)
    paths = write_harvest(t, result, to or t.root / "data" / "harvest", [str(log)])
    out.print(harvest_table(result))
    for note in result.notes:
        out.print(f"[yellow]note[/] {escape(note)}", highlight=False)
    out.print(
        f"training examples: {paths['train']}\nedge cases (evaluate, never train): {paths['edge']}",
        highlight=False,
    )


@app.command()
def replay(
    n_task: Annotated[int, typer.Option("--items", min=1, help="Task examples in the training set.")],
    fraction: Annotated[float, typer.Option(min=0.0, max=0.49, help="Share of replay in the mix.")] = 0.03,
    file: Annotated[Path | None, typer.Option(help="Your own replay file (JSONL: prompt, response).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    to: Annotated[Path | None, typer.Option("--out", help="Write the sample here (JSONL).")] = None,
) -> None:
    """Sample general instruction examples to mix into a fine-tune against forgetting (2–5% recommended)."""
    from dataclasses import asdict

    from honed.data.io import write_jsonl
    from honed.data.replay import mix_replay

    picked = mix_replay(n_task, fraction, seed=seed, path=file)
    out.print(f"{len(picked)} replay examples for {n_task} task examples ({fraction:.0%} of the mix)")
    if to:
        write_jsonl(to, [asdict(e) for e in picked])
        out.print(f"wrote {to}", highlight=False)

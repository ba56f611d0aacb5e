"""`honed init`: a task folder from a data file — honed.toml written from what the data holds, the data imported
and split, the test set locked.

    init_task(dest, source, input_field="text", label_field="label")   → InitReport

The labels are the label column's distinct values (sorted); `none_label` names the value that
means "none of them" (it must occur in the data, and is left out of the label set). The prompt lists the labels,
asks for one of them, and is what the base model is evaluated with; a short `tuned_template` (the message alone)
is what tune trains and serve serves, as in the examples. Answers are constrained to the label set. The data is
imported as `honed data import` imports it (JSONL, CSV, TSV, Parquet, Arrow, a `datasets` folder; file:row
errors) into `data/imported.jsonl`, and split by `honed data split` (stratified, near duplicates kept together,
test locked by hash).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from honed.data.io import read_rows
from honed.errors import DataError, UserError

KINDS = ("classify",)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class InitReport:
    task_file: Path
    labels: list[str]
    none_label: str | None
    counts: dict[str, int]
    """Items per split."""
    lock_file: Path
    dropped: int


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scan_labels(source: Path, input_field: str, label_field: str, fmt: str | None = None) -> Counter[str]:
    """How often each label occurs, checking that every row has both columns (file:row errors, all at once)."""
    counts: Counter[str] = Counter()
    errors: list[str] = []
    for row_no, row in read_rows(source, fmt):
        missing = [c for c in (input_field, label_field) if c not in row]
        if missing and not counts and not errors:  # the first row: the columns are wrong, not the row
            flag = "--input" if missing[0] == input_field else "--label"
            raise DataError(f"{source}: no column {missing[0]!r}; its columns are {', '.join(sorted(row))}: name "
                            f"the text column with --input and the label column with --label (here {flag})")
        if missing:
            errors.append(f"{source}:{row_no}: no column {', '.join(map(repr, missing))}; the row has {sorted(row)}")
            continue
        label = row[label_field]
        if label is None or not str(label).strip():
            errors.append(f"{source}:{row_no}: the label column {label_field!r} is empty")
            continue
        counts[str(label).strip()] += 1
    if errors:
        raise DataError(f"{source}: cannot build a task from it:\n  " + "\n  ".join(errors[:20]))
    if not counts:
        raise DataError(f"{source}: no rows")
    return counts


def _toml_list(values: list[str]) -> str:
    """Values as TOML strings, several to a line when there are many."""
    items = [_toml_str(v) for v in values]
    if len(items) <= 6:
        return ", ".join(items)
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) > 100:
            lines.append(line.rstrip())
            line = ""
        line += item + ", "
    return "\n  " + "\n  ".join([*lines, line.rstrip(", ")]) + ",\n"


def task_toml(name: str, field: str, labels: list[str], none_label: str | None, source: Path) -> str:
    """The honed.toml of a classify task over `labels`, prompting with the input field `field`."""
    none_line = f"none_label = {_toml_str(none_label)}\n" if none_label else ""
    none_prompt = "If none of them fits, answer {{ none_label }}.\n" if none_label else ""
    answer = "the category name" + (" or {{ none_label }}" if none_label else "")
    return f"""name = {_toml_str(name)}
kind = "classify"
description = {_toml_str(f"Classify each {field} into one of {len(labels)} categories (made by honed init from {source.name}).")}

[data]
train = "data/train.jsonl"
val = "data/val.jsonl"
test = "data/test.jsonl"   # locked by content hash (data/test.lock.json): every gate measures on it

[prompt]
# The base model is evaluated with this prompt; edit the wording freely (add [classify.descriptions] and use
# {{{{ descriptions[label] }}}} to explain each category).
template = '''
Classify this {field} into one category:
{{% for label in labels %}}
- {{{{ label }}}}
{{% endfor %}}
{none_prompt}
{field.capitalize()}: {{{{ {field} }}}}

Answer with only {answer}.'''
# A fine-tuned model learns the categories from the examples: trained and served with the {field} alone.
tuned_template = '''{field.capitalize()}: {{{{ {field} }}}}'''
tuned_system = "Answer with the category."

[classify]
labels = [{_toml_list(labels)}]
{none_line}
[generation]
constrained = true   # answers are always one of the labels

[acceptance]
min_relative_improvement = 0.10   # the gate passes a fine-tune that beats its base by 10% or more
"""


def init_task(dest: Path, source: Path, *, kind: str = "classify", input_field: str = "text",
              label_field: str = "label", none_label: str | None = None, name: str | None = None,
              fmt: str | None = None, ratios: tuple[float, float, float] | None = None, seed: int = 0,
              force: bool = False) -> InitReport:
    """Write `dest/honed.toml` from `source`, import and split its rows into `dest/data/`, lock the test set."""
    from honed.data.io import import_items, write_items
    from honed.data.split import DEFAULT_RATIOS, split_task
    from honed.task.spec import load_task

    if kind not in KINDS:
        raise UserError(f"--kind {kind}: honed init scaffolds {', '.join(KINDS)} tasks for now; for pick, extract "
                        "and generate, copy one of the examples (examples/pick, examples/extract, examples/generate)")
    dest, source = Path(dest), Path(source)
    task_file = dest / "honed.toml"
    if task_file.exists() and not force:
        raise UserError(f"{task_file} exists already; pick another folder, or pass --force to overwrite it "
                        "(its locked test set stays locked)")
    counts = scan_labels(source, input_field, label_field, fmt)
    if none_label is not None and none_label not in counts:
        raise DataError(f"--none-label {none_label!r} does not occur in the label column {label_field!r} of "
                        f"{source}; its values include {sorted(counts)[:10]}")
    labels = sorted(label for label in counts if label != none_label)
    if len(labels) < 2:
        raise DataError(f"{source}: the label column {label_field!r} holds {len(labels)} label(s) besides the "
                        "none label; a classify task needs two or more")
    # The template names the input by its column; a column that is no template name is imported as `text`.
    field = input_field if _IDENT.match(input_field) else "text"
    task_name = name or _NAME.sub("-", dest.resolve().name).strip("-.") or "task"
    dest.mkdir(parents=True, exist_ok=True)
    task_file.write_text(task_toml(task_name, field, labels, none_label, source), encoding="utf-8")
    task = load_task(dest)  # the file just written must be a valid task: a bug here is honed's, not the user's
    # imported as `honed data import` does (data/imported.jsonl), then split as `honed data split` does
    staged = dest / "data" / "imported.jsonl"
    write_items(task, staged, import_items(task, source, mapping={field: input_field, "expected": label_field},
                                           fmt=fmt))
    report = split_task(task, [staged], ratios=ratios or DEFAULT_RATIOS, seed=seed, progress=True)
    return InitReport(task_file, labels, none_label,
                      {split: sum(c.values()) for split, c in report.counts.items()}, report.lock_file,
                      len(report.dropped))

"""Reading JSONL/CSV files into task items with a field mapping, and writing items back, atomically.

Items stay the flat JSONL objects `honed.task.data` reads: `{"id": …, <input fields>…, "expected": …}`. Every
error names the file, the line and the field, and says what was expected; all the errors of a file are
reported together (up to `MAX_ERRORS`), so one pass fixes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from honed.data.reader import read_csv, read_jsonl
from honed.errors import DataError
from honed.jsonl import json_value
from honed.task.conversation import from_cell, transcript
from honed.task.data import Item, _check_expected
from honed.task.spec import Task

MAX_ERRORS = 20
# Names the prompt builder provides itself (honed.task.prompt.template_context): not item fields.
_CONTEXT_NAMES = {
    "task",
    "labels",
    "none_label",
    "descriptions",
    "candidates",
    "numbered_candidates",
    "schema",
    "raise_exception",
    "strftime_now",
    "loop",
    "range",
    "namespace",
    "dict",
    "lipsum",
    "cycler",
    "joiner",
}


def input_fields(task: Task) -> list[str]:
    """The item fields the task's prompt needs: its templates' free variables, plus the pick candidates."""
    env = jinja2.Environment()
    env.filters["transcript"] = transcript  # parsing checks filter names: the prompt builder's own filters
    names: set[str] = set()
    p = task.spec.prompt
    for src in (p.template, p.system, p.tuned_template, p.tuned_system):
        if src:
            names |= meta.find_undeclared_variables(env.parse(src))
    names -= _CONTEXT_NAMES
    if task.spec.pick is not None:
        names.add(task.spec.pick.candidates_field)
    return sorted(names)


FORMATS = ("jsonl", "csv", "tsv", "parquet", "arrow", "hf")
"""What `honed data import` reads: arrow is an Arrow file or a `datasets` save_to_disk folder; hf a hub id."""


def _format(path: Path, fmt: str | None) -> str:
    fmt = fmt or ("arrow" if path.is_dir() else {
        ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
        ".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow"}.get(path.suffix.lower(), ""))
    if fmt not in FORMATS:
        raise DataError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; "
            f"pass --format {', '.join(FORMATS[:-1])} or {FORMATS[-1]}"
        )
    return fmt


def read_rows(path: Path, fmt: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) for each record of a JSONL, CSV, TSV, Parquet or Arrow file, a `datasets` folder, or
    (`fmt="hf"`, or a source `hf:owner/name[:split]`) a hub dataset. CSV values are strings; the others keep
    their types. JSONL and CSV rows are numbered by line, the others from 1."""
    from honed.data import tables

    if fmt == "hf" or str(path).startswith("hf:"):
        return tables.read_hub(str(path).removeprefix("hf:"))
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    kind = _format(path, fmt)
    if path.is_dir() and kind != "arrow":
        raise DataError(f"{path}: a folder; only a datasets save_to_disk folder (--format arrow) is read as one")
    if kind == "jsonl":
        return read_jsonl(path)
    if kind == "parquet":
        return tables.read_parquet(path)
    if kind == "arrow":
        return tables.read_arrow(path)
    return read_csv(path, delimiter="\t" if kind == "tsv" else ",")


def parse_mapping(specs: Sequence[str], what: str = "--map") -> dict[str, str]:
    """["text=message", …] → {"text": "message"}: task field ← source field."""
    mapping: dict[str, str] = {}
    for spec in specs:
        left, sep, right = spec.partition("=")
        if not sep or not left.strip() or not right.strip():
            raise DataError(f"{what} {spec!r}: expected TASK_FIELD=SOURCE_FIELD, e.g. {what} text=message")
        mapping[left.strip()] = right.strip()
    return mapping


def _structured(value: Any, where: str, field: str, want: type, example: str) -> Any:
    """A list or object field: JSONL gives it as is; a CSV cell must hold its JSON text."""
    name = {list: "JSON array", dict: "JSON object"}[want]
    if isinstance(value, str):
        if not value.lstrip().startswith(("[", "{")):
            raise DataError(f"{where}: field {field!r} must be a {name} like {example}, got {value[:60]!r}")
        value = json_value(value, f"{where}: field {field!r}", f"expected a {name} like {example}")
    if not isinstance(value, want):
        raise DataError(f"{where}: field {field!r} must be a {name}, got {type(value).__name__}")
    return value


def _row_to_item(
    task: Task,
    row: dict[str, Any],
    where: str,
    lineno: int,
    mapping: dict[str, str],
    label_map: dict[str, str],
    id_prefix: str,
) -> Item:
    def get(field: str, required: bool = True) -> Any:
        src = mapping.get(field, field)
        if src not in row:
            if not required:
                return None
            via = f" (mapped from source field {src!r})" if src != field else ""
            raise DataError(
                f"{where}: missing field {field!r}{via}; the row has {sorted(row)}"
                f"{'' if via else f'; map it with --map {field}=SOURCE_FIELD'}"
            )
        return row[src]

    inputs: dict[str, Any] = {}
    for field in input_fields(task):
        value = get(field)
        if task.spec.pick is not None and field == task.spec.pick.candidates_field:
            value = _structured(value, where, field, list, '["Careers", "Contact"]')
        elif isinstance(value, str) and not value.strip():
            raise DataError(f"{where}: field {field!r} is empty")
        else:
            value = from_cell(value, where, field)  # a conversation: a list of messages, or its JSON in a cell
        inputs[field] = value
    if task.kind == "generate":
        kws = get("keywords", required=False)
        if kws not in (None, ""):
            if isinstance(kws, str) and not kws.lstrip().startswith("["):
                kws = [k.strip() for k in kws.split(";") if k.strip()]
            inputs["keywords"] = _structured(kws, where, "keywords", list, '["refund"] or refund;invoice')
    expected = get(task.spec.data.expected_field, required=task.kind != "generate")
    if task.kind == "classify" and isinstance(expected, str):
        expected = label_map.get(expected.strip(), expected.strip())
    elif task.kind == "pick" and isinstance(expected, str) and expected.strip().isascii() \
            and expected.strip().isdigit() and len(expected.strip()) < 10:  # longer: no candidate list is that long
        expected = int(expected)
    elif task.kind == "extract":
        expected = _structured(expected, where, task.spec.data.expected_field, dict, '{"name": "…"}')
    raw_id = get(task.spec.data.id_field, required=False)
    item_id = str(raw_id).strip() if raw_id not in (None, "") else f"{id_prefix}{lineno:05d}"
    item = Item(id=item_id, inputs=inputs, expected=expected, line=lineno)
    _check_expected(task, item, where)
    return item


def import_items(
    task: Task,
    source: Path,
    *,
    mapping: dict[str, str] | None = None,
    fmt: str | None = None,
    label_map: dict[str, str] | None = None,
    id_prefix: str | None = None,
) -> list[Item]:
    """Read a JSONL/CSV/TSV/Parquet/Arrow file or a `datasets` folder into the task's items, checking every row.

    `mapping` renames fields (task field → source field; "id" and "expected" too); fields the prompt does not
    use are left out. `label_map` renames classify labels. Rows without an id get `<id_prefix><line>`.
    """
    source = Path(source)
    mapping = mapping or {}
    for key in ("id", "expected"):
        if key in mapping:  # the task may call these fields something else
            target = task.spec.data.id_field if key == "id" else task.spec.data.expected_field
            mapping.setdefault(target, mapping[key])
    unknown = (
        set(mapping)
        - set(input_fields(task))
        - {"id", "expected", "keywords", task.spec.data.id_field, task.spec.data.expected_field}
    )
    if unknown:
        raise DataError(
            f"--map names fields the task does not have: {sorted(unknown)}; the task's fields are "
            f"{input_fields(task)} plus {task.spec.data.id_field!r} and "
            f"{task.spec.data.expected_field!r}"
        )
    prefix = id_prefix if id_prefix is not None else f"{source.stem}-"
    items: list[Item] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for lineno, row in read_rows(source, fmt):
        where = f"{source}:{lineno}"
        try:
            item = _row_to_item(task, row, where, lineno, mapping, label_map or {}, prefix)
        except DataError as exc:
            errors.append(str(exc))
            continue
        if item.id in seen:
            errors.append(f"{where}: duplicate id {item.id!r} (first on line {seen[item.id]})")
            continue
        seen[item.id] = lineno
        items.append(item)
    if errors:
        shown = "\n  ".join(errors[:MAX_ERRORS])
        more = f"\n  … and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise DataError(f"{source}: {len(errors)} row(s) cannot be imported:\n  {shown}{more}")
    if not items:
        raise DataError(f"{source}: no rows to import (the file is empty)")
    return items


def item_row(task: Task, item: Item) -> dict[str, Any]:
    """The JSONL object of an item, in the task's field names: id first, answer last."""
    row: dict[str, Any] = {task.spec.data.id_field: item.id, **item.inputs}
    if item.expected is not None or task.kind != "generate":
        row[task.spec.data.expected_field] = item.expected
    return row


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write JSON lines so that a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def write_items(task: Task, path: Path, items: Sequence[Item]) -> None:
    """Write items as the task's JSONL (atomic); refuses the locked test file."""
    from honed.data.lock import guard_write

    guard_write(task, path)
    write_jsonl(path, [item_row(task, i) for i in items])

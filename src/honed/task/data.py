"""Reading a task's JSONL items, with errors that name the file, the line and the field."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from honed.data.reader import read_jsonl
from honed.errors import DataError
from honed.task.relations import first_violation
from honed.task.spec import Task


@dataclass(frozen=True)
class Item:
    """One example: its input fields and the expected answer (None where the task has no reference)."""

    id: str
    inputs: dict[str, Any]
    expected: Any = None
    line: int = 0


def _short(value: Any, limit: int = 60) -> str:
    """repr of a value for an error message, cut at `limit` characters (a data file may hold a 1 MiB cell)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_expected(task: Task, item: Item, where: str) -> None:
    exp = item.expected
    if task.kind == "classify":
        if exp not in task.labels:
            raise DataError(f"{where}: field {task.spec.data.expected_field!r} = {_short(exp)} is not one of the task's "
                            f"labels {task.labels}")
    elif task.kind == "pick":
        assert task.spec.pick is not None
        cands = item.inputs.get(task.spec.pick.candidates_field)
        if not isinstance(cands, list) or not cands:
            raise DataError(f"{where}: field {task.spec.pick.candidates_field!r} must be a non-empty list")
        ok = exp == task.spec.pick.none_label or (isinstance(exp, int) and not isinstance(exp, bool)
                                                   and 1 <= exp <= len(cands))
        if not ok:
            raise DataError(f"{where}: field {task.spec.data.expected_field!r} = {_short(exp)}: expected a candidate "
                            f"number 1..{len(cands)} or {task.spec.pick.none_label!r}")
    elif task.kind == "extract":
        assert task.schema is not None
        errors = sorted(jsonschema.Draft202012Validator(task.schema).iter_errors(exp), key=lambda e: e.path)
        if errors:
            path = "/".join(str(p) for p in errors[0].path) or "(root)"
            raise DataError(f"{where}: expected answer does not satisfy the task's schema at {path}: "
                            f"{errors[0].message}")
        if problem := first_violation(task.spec.extract, exp):
            raise DataError(f"{where}: expected answer: {problem}")
    else:
        if exp is not None and not isinstance(exp, str):
            raise DataError(f"{where}: field {task.spec.data.expected_field!r} must be a string for a generate task")
        kws = item.inputs.get("keywords")
        if kws is not None and not (isinstance(kws, list) and all(isinstance(k, str) for k in kws)):
            raise DataError(f"{where}: field 'keywords' must be a list of strings")


def load_items(task: Task, split: str = "test", path: Path | None = None) -> list[Item]:
    """Load and validate the items of one split (or of an explicit JSONL file)."""
    file = path or task.split_path(split)
    if not file.exists():
        raise DataError(f"{file}: data file for split {split!r} not found (set [data] {split} in {task.source})")
    id_field, exp_field = task.spec.data.id_field, task.spec.data.expected_field
    items: list[Item] = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(file):
        where = f"{file}:{lineno}"
        if exp_field not in obj and task.kind != "generate":
            raise DataError(f"{where}: missing field {exp_field!r} (the expected answer)")
        item_id = str(obj.pop(id_field, lineno))
        if item_id in seen:
            raise DataError(f"{where}: duplicate id {item_id!r} (first on line {seen[item_id]})")
        seen[item_id] = lineno
        expected = obj.pop(exp_field, None)
        item = Item(id=item_id, inputs=obj, expected=expected, line=lineno)
        _check_expected(task, item, where)
        items.append(item)
    if not items:
        raise DataError(f"{file}: no items (the file is empty)")
    if split == "test" and path is None:
        from honed.data.lock import verify_lock  # late: honed.data.lock imports this module

        verify_lock(task, items)  # a locked test set that changed is refused, never used
    return items


def items_hash(items: list[Item]) -> str:
    """Content hash of a list of items, order-independent: identifies the data behind every number."""
    digests = sorted(
        hashlib.sha256(json.dumps([i.id, i.inputs, i.expected], sort_keys=True, ensure_ascii=False).encode())
        .hexdigest()
        for i in items
    )
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()

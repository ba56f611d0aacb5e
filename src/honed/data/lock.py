"""The locked test set: a manifest of content hashes beside the test file, checked on every load.

The test split decides every gate, so it must not change behind anyone's back, and nothing trained on may
resemble it. `honed data split` writes `<test file stem>.lock.json` (e.g. `data/test.lock.json`) with, per
item,
the hash of its input fields and the hash of input + answer. Then:

- `verify_lock` (called by `load_items(task, "test")`) refuses a test file whose items were added, removed,
  renamed or changed since the lock, naming the ids and the command that re-locks on purpose;
- `assert_not_locked` (called by the trainer) refuses train/val items that are a locked item, under any id, or
  a near duplicate of one;
- `guard_write` refuses any honed command that would write over the locked test file.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.data.dedup import DEFAULT_THRESHOLD, NearDuplicateIndex, content_hash, item_text
from honed.data.reader import read_json_file
from honed.errors import DataError, TaskError
from honed.store import canonical_json, write_json_atomic
from honed.task.data import Item, items_hash
from honed.task.spec import Task

LOCK_VERSION = 1
RELOCK_HINT = (
    "if the change is deliberate, re-lock the test file as it is now with `honed data split {task} "
    "--relock` (or redraw the whole split with `--resplit --relock`)"
)


def item_hash(item: Item) -> str:
    """sha256 of an item's inputs and answer: changes when either does."""
    return hashlib.sha256(canonical_json([item.inputs, item.expected]).encode("utf-8")).hexdigest()


def lock_path(task: Task) -> Path:
    """Where the lock of the task's test file lives: beside it, `<stem>.lock.json`."""
    test = task.split_path("test")
    return test.with_name(f"{test.stem}.lock.json")


@dataclass(frozen=True)
class Lock:
    """A read lock manifest: per id, (input hash, item hash)."""

    path: Path
    created: str
    items: dict[str, tuple[str, str]]

    @property
    def input_hashes(self) -> dict[str, str]:
        """input hash → id of the locked item."""
        return {h: i for i, (h, _) in self.items.items()}


def read_lock(task: Task) -> Lock | None:
    """The task's lock, or None when the test file has never been locked (or the task has no test file)."""
    try:
        path = lock_path(task)
    except TaskError:
        return None
    if not path.exists():
        return None
    fix = (f"restore it from version control, or delete it and re-lock with `honed data split {task.root} "
           "--relock`")
    doc = read_json_file(path, fix)  # bounded: non-UTF-8, a huge integer or an endless line is one error
    try:
        if not isinstance(doc, dict):
            raise TypeError(f"expected a JSON object, got {type(doc).__name__}")
        if doc.get("honed_lock") != LOCK_VERSION:
            raise ValueError(f"unknown lock version {doc.get('honed_lock')!r}")
        items = {str(e["id"]): (str(e["input_sha256"]), str(e["item_sha256"])) for e in doc["items"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a valid honed lock manifest ({exc}); {fix}") from None
    return Lock(path, str(doc.get("created", "")), items)


def write_lock(task: Task, items: Sequence[Item]) -> Path:
    """Lock `items` as the task's test set (atomically)."""
    path = lock_path(task)
    doc = {
        "honed_lock": LOCK_VERSION,
        "task": task.name,
        "file": task.split_path("test").name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n_items": len(items),
        "items_sha256": items_hash(list(items)),
        "items": [
            {"id": i.id, "input_sha256": content_hash(i.inputs), "item_sha256": item_hash(i)}
            for i in sorted(items, key=lambda i: i.id)
        ],
    }
    write_json_atomic(path, doc)
    return path


def _ids(ids: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def lock_violations(lock: Lock, items: Sequence[Item]) -> dict[str, list[str]]:
    """What changed between a lock and the items: {"changed_input", "changed_answer", "added", "removed",
    "renamed"} → ids (renamed as "old → new")."""
    now = {i.id: i for i in items}
    added = [i for i in now if i not in lock.items]
    removed = [i for i in lock.items if i not in now]
    by_input = {lock.items[r][0]: r for r in removed}
    renamed = []
    for new_id in list(added):
        old = by_input.get(content_hash(now[new_id].inputs))
        if old is not None and lock.items[old][1] == item_hash(now[new_id]):
            renamed.append(f"{old} → {new_id}")
            added.remove(new_id)
            removed.remove(old)
    changed_input, changed_answer = [], []
    for i, item in now.items():
        if i in lock.items and item_hash(item) != lock.items[i][1]:
            (changed_input if content_hash(item.inputs) != lock.items[i][0] else changed_answer).append(i)
    found = {
        "changed_input": changed_input,
        "changed_answer": changed_answer,
        "added": added,
        "removed": removed,
        "renamed": renamed,
    }
    return {k: v for k, v in found.items() if v}


def verify_lock(task: Task, items: Sequence[Item]) -> None:
    """Raise DataError when the test items differ from their lock in any way; no-op when there is no lock."""
    lock = read_lock(task)
    if lock is None:
        return
    found = lock_violations(lock, items)
    if not found:
        return
    words = {
        "changed_input": "input changed",
        "changed_answer": "expected answer changed",
        "added": "added",
        "removed": "removed",
        "renamed": "renamed",
    }
    what = "; ".join(f"{words[k]}: {_ids(v)}" for k, v in found.items())
    raise DataError(
        f"{task.split_path('test')}: the locked test set changed since it was locked on "
        f"{lock.created} ({lock.path.name}): {what}. The test set decides every gate, so honed will "
        f"not use a silently changed one; undo the change (e.g. `git checkout {task.split_path('test')}`)"
        f", or {RELOCK_HINT.format(task=task.root)}"
    )


def assert_not_locked(
    task: Task, items: Sequence[Item], *, threshold: float = DEFAULT_THRESHOLD, what: str = "training"
) -> None:
    """Refuse to train on items that are locked test items (same input, any id) or near duplicates of one.

    No-op when the task has no lock. The message names each offending item and its locked twin.
    """
    lock = read_lock(task)
    if lock is None or not items:
        return
    from honed.task.data import load_items

    locked = lock.input_hashes
    problems = []
    exact: set[str] = set()
    for item in items:
        twin = locked.get(content_hash(item.inputs))
        if twin is not None:
            exact.add(item.id)
            problems.append(f"{item.id!r} has the same input as locked test item {twin!r}")
    test_items = load_items(task, "test")  # verified against the lock on the way in
    index = NearDuplicateIndex(threshold)
    index.add_many([(i.id, item_text(i.inputs)) for i in test_items])
    rest = [(i.id, item_text(i.inputs)) for i in items if i.id not in exact]
    for m in index.query_many(rest):
        problems.append(
            f"{m.key!r} is a near duplicate (Jaccard {m.jaccard:.2f}) of locked test item {m.other!r}"
        )
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise DataError(
            f"refusing to use {len(problems)} {what} item(s) that leak the locked test set "
            f"({lock.path}): {shown}. Remove them, or let `honed data split {task.root}` re-split "
            f"train/val around the lock; `honed data check {task.root}` lists every pair"
        )


def guard_write(task: Task, path: Path) -> None:
    """Refuse to write over the task's locked test file."""
    lock = read_lock(task)
    if lock is None:
        return
    if Path(path).resolve() == task.split_path("test").resolve():
        raise DataError(
            f"{path} is the task's locked test file ({lock.path.name}); honed does not write into it. "
            f"Write elsewhere, or {RELOCK_HINT.format(task=task.root)}"
        )


def read_splits_unverified(task: Task) -> dict[str, tuple[Path, list[Item]]]:
    """Every split file that exists, read WITHOUT the lock check: for the commands (stats, check) that report a
    broken lock instead of refusing to look at the data."""
    from honed.errors import TaskError
    from honed.task.data import load_items
    from honed.task.spec import SPLITS

    out: dict[str, tuple[Path, list[Item]]] = {}
    for split in SPLITS:
        try:
            path = task.split_path(split)
        except TaskError:
            continue
        if path.exists():
            out[split] = (path, load_items(task, split, path=path))  # an explicit path skips verify_lock
    return out


def lock_status_line(state: dict[str, Any]) -> Any:
    """One rich line saying whether the test set is locked, unchanged or violated (stats and check print it)."""
    from rich.text import Text

    if not state["locked"]:
        return Text("test set: not locked (run `honed data split` to split and lock it)", style="yellow")
    if state["violations"]:
        return Text(f"test set: LOCK VIOLATED ({state['path']}): {state['violations']}", style="bold red")
    since = f", {state['n_items']} items unchanged since {state['created']}" if "n_items" in state else " and unchanged"
    return Text(f"test set: locked{since}", style="green")

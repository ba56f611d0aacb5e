"""`honed data stats`: what a task's data holds, per split, and what is wrong with it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from honed.data.dedup import content_hash
from honed.data.lock import lock_status_line, lock_violations, read_lock, read_splits_unverified
from honed.data.warnings import TokenCounter, class_counts, data_warnings, estimate_tokens
from honed.task.data import Item
from honed.task.prompt import build_answer
from honed.task.spec import Task


def _summary(values: list[int]) -> dict[str, float | int | None]:
    if not values:
        return {"min": None, "p50": None, "max": None, "mean": None}
    s = sorted(values)
    return {"min": s[0], "p50": s[len(s) // 2], "max": s[-1], "mean": round(sum(s) / len(s), 1)}


def split_stats(task: Task, items: list[Item], count_tokens: TokenCounter | None = None) -> dict[str, Any]:
    """Counts, classes, lengths and duplicates of one split's items."""
    counter = count_tokens or estimate_tokens
    hashes = Counter(content_hash(i.inputs) for i in items)
    by_input: dict[str, set[str]] = {}
    for i in items:
        by_input.setdefault(content_hash(i.inputs), set()).add(repr(i.expected))
    return {
        "n": len(items),
        "classes": dict(class_counts(task, items)),
        "input_chars": _summary([sum(len(str(v)) for v in i.inputs.values()) for i in items]),
        "completion_tokens": _summary(
            [counter(build_answer(task, i.expected)) for i in items if i.expected is not None]
        ),
        "exact_duplicates": sum(k - 1 for k in hashes.values() if k > 1),
        "conflicting_answers": sum(1 for answers in by_input.values() if len(answers) > 1),
    }


def dataset_stats(
    task: Task, count_tokens: TokenCounter | None = None, max_completion_tokens: int | None = None
) -> dict[str, Any]:
    """Per-split statistics, the lock's state and the training-data warnings (on train)."""
    splits: dict[str, Any] = {}
    loaded: dict[str, list[Item]] = {}
    for split, (path, items) in read_splits_unverified(task).items():
        loaded[split] = items
        splits[split] = {"path": str(path), **split_stats(task, items, count_tokens)}
    lock = read_lock(task)
    lock_state: dict[str, Any] = {"locked": lock is not None}
    if lock is not None:
        lock_state.update(
            path=str(lock.path),
            created=lock.created,
            n_items=len(lock.items),
            violations=lock_violations(lock, loaded.get("test", [])),
        )
    train = loaded.get("train")
    warnings = (
        []
        if train is None
        else data_warnings(
            task, train, count_tokens=count_tokens, max_completion_tokens=max_completion_tokens
        )
    )
    return {
        "task": task.name,
        "kind": task.kind,
        "splits": splits,
        "lock": lock_state,
        "token_counts": "exact" if count_tokens else "estimated",
        "generation_budget": max_completion_tokens or task.max_tokens,
        "warnings": [{"code": w.code, "message": w.message} for w in warnings],
    }


def stats_tables(doc: dict[str, Any]) -> list[Any]:
    """Rich renderables for a `dataset_stats` document: splits, classes, lock, warnings."""
    from rich.table import Table
    from rich.text import Text

    splits = doc["splits"]
    overview = Table(title=f"{doc['task']} ({doc['kind']})", title_justify="left")
    for col in (
        "split",
        "items",
        "input chars p50/max",
        f"completion tokens p50/max ({doc['token_counts']})",
        "exact dups",
        "conflicting answers",
    ):
        overview.add_column(col, justify="left" if col == "split" else "right")
    for name, s in splits.items():
        overview.add_row(
            name,
            str(s["n"]),
            f"{s['input_chars']['p50']}/{s['input_chars']['max']}",
            f"{s['completion_tokens']['p50']}/{s['completion_tokens']['max']}",
            str(s["exact_duplicates"]),
            str(s["conflicting_answers"]),
        )
    out: list[Any] = [overview]
    classes = sorted({c for s in splits.values() for c in s["classes"]})
    if classes:
        table = Table(title="examples per class", title_justify="left")
        table.add_column("class")
        for name in splits:
            table.add_column(name, justify="right")
        for c in classes:
            table.add_row(c, *(str(splits[n]["classes"].get(c, 0)) for n in splits))
        out.append(table)
    out.append(lock_status_line(doc["lock"]))
    for w in doc["warnings"]:
        out.append(Text(f"warning [{w['code']}]: {w['message']}", style="yellow"))
    return out

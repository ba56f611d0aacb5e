"""`honed data check`: is the test set still what was locked, and does anything outside it resemble it?

Contamination is a test (or val) item whose input also appears, exactly or as a near duplicate, in another
split: its score measures memory, not skill. Every pair is verified with the exact Jaccard of the two inputs'
shingle sets (see `honed.data.dedup`).
"""

from __future__ import annotations

from typing import Any

from honed.data.dedup import DEFAULT_THRESHOLD, content_hash, item_text, within_duplicates
from honed.data.lock import lock_status_line, lock_violations, read_lock, read_splits_unverified
from honed.display import Bar
from honed.task.data import Item
from honed.task.spec import SPLITS, Task

_ORDER = {s: i for i, s in enumerate(SPLITS)}


def check_task(task: Task, threshold: float = DEFAULT_THRESHOLD, progress: bool = False) -> dict[str, Any]:
    """Lock state, and exact and near duplicates across the task's splits. `ok` is False on any problem."""
    # the lock is checked below, and reported
    loaded: dict[str, list[Item]] = {s: items for s, (_, items) in read_splits_unverified(task).items()}
    lock = read_lock(task)
    violations = lock_violations(lock, loaded.get("test", [])) if lock is not None else {}
    keyed = [((split, i.id), i) for split, items in loaded.items() for i in items]
    by_key = dict(keyed)
    with Bar(progress, "near duplicates", total=len(keyed), unit="items") as bar:
        pairs = within_duplicates([(k, item_text(i.inputs)) for k, i in keyed], threshold, bar.advance)
    cross: list[dict[str, Any]] = []
    within = 0
    for m in pairs:
        (sa, ia), (sb, ib) = m.key, m.other  # type: ignore[misc]
        if sa == sb:
            within += 1
            continue
        if _ORDER[sa] > _ORDER[sb]:  # report as (earlier split, later split)
            (sa, ia), (sb, ib) = (sb, ib), (sa, ia)
        exact = content_hash(by_key[(sa, ia)].inputs) == content_hash(by_key[(sb, ib)].inputs)
        cross.append(
            {
                "a_split": sa,
                "a_id": ia,
                "b_split": sb,
                "b_id": ib,
                "jaccard": m.jaccard,
                "kind": "exact" if exact else "near",
            }
        )
    cross.sort(
        key=lambda p: (_ORDER[p["b_split"]], _ORDER[p["a_split"]], -p["jaccard"], p["b_id"], p["a_id"])
    )
    contaminated = {
        split: sorted({p["b_id"] for p in cross if p["b_split"] == split}) for split in ("val", "test")
    }
    n = {split: len(items) for split, items in loaded.items()}
    return {
        "task": task.name,
        "threshold": threshold,
        "splits": n,
        "lock": {
            "locked": lock is not None,
            "path": str(lock.path) if lock else None,
            "violations": violations,
        },
        "cross_split_pairs": cross,
        "n_exact": sum(p["kind"] == "exact" for p in cross),
        "n_near": sum(p["kind"] == "near" for p in cross),
        "within_split_pairs": within,
        "contaminated": {
            s: {"n": len(ids), "rate": round(len(ids) / n[s], 4) if n.get(s) else None, "ids": ids}
            for s, ids in contaminated.items()
        },
        "ok": not cross and not violations,
    }


def check_tables(doc: dict[str, Any], limit: int = 30) -> list[Any]:
    """Rich renderables for a `check_task` document."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    out.append(lock_status_line(doc["lock"]))
    pairs = doc["cross_split_pairs"]
    if pairs:
        table = Table(
            title=f"duplicates across splits (Jaccard ≥ {doc['threshold']}, {doc['n_exact']} exact, "
            f"{doc['n_near']} near; first {min(limit, len(pairs))})",
            title_justify="left",
        )
        for col in ("split", "id", "twin split", "twin id", "Jaccard", "kind"):
            table.add_column(col)
        for p in pairs[:limit]:
            table.add_row(
                p["b_split"], str(p["b_id"]), p["a_split"], str(p["a_id"]), f"{p['jaccard']:.2f}", p["kind"]
            )
        out.append(table)
    for split, c in doc["contaminated"].items():
        if doc["splits"].get(split):
            style = "bold red" if c["n"] else "green"
            out.append(
                Text(
                    f"{split}: {c['n']} of {doc['splits'][split]} items contaminated "
                    f"({(c['rate'] or 0):.1%})",
                    style=style,
                )
            )
    if doc["within_split_pairs"]:
        out.append(
            Text(
                f"{doc['within_split_pairs']} near-duplicate pair(s) inside a split (not contamination)",
                style="dim",
            )
        )
    return out

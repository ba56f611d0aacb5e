"""Stratified, seeded train/val/test split that keeps near duplicates together, and locks the test set.

Three choices make the split trustworthy:
- *Stratified*: each stratum (a classify label; NONE vs a pick; an empty vs a non-empty extraction) is split
  in the same proportions, by largest remainder, so a rare class is not left out of val or test by chance.
- *Grouped*: near duplicates (see `honed.data.dedup`) form one unit that lands in one split; otherwise a
  rephrased copy of a test item would sit in train and the test score would measure memory.
- *Deterministic*: items are ordered by content hash before the seeded shuffle, so the same items and seed
  give the same split whatever order the files list them in.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from honed.data.dedup import DEFAULT_THRESHOLD, clusters, content_hash, item_text
from honed.data.io import import_items, item_row, write_items, write_jsonl
from honed.data.lock import lock_path, read_lock, write_lock
from honed.display import Bar
from honed.errors import DataError, TaskError
from honed.task.data import Item, load_items
from honed.task.spec import SPLITS, Task

DEFAULT_RATIOS = (0.8, 0.1, 0.1)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """ "80/10/10" or "0.8,0.1,0.1" → fractions that sum to 1."""
    parts = [p for p in text.replace(",", "/").split("/") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0 or values[0] == 0:
        raise DataError(
            f"--ratios {text!r}: expected three non-negative numbers TRAIN/VAL/TEST with TRAIN > 0, "
            "e.g. 80/10/10"
        )
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def stratum(task: Task, item: Item) -> str:
    """The class an item is stratified by."""
    if task.kind == "classify":
        return str(item.expected)
    if task.kind == "pick":
        return "NONE" if item.expected == task.none_label else "PICK"
    if task.kind == "extract":
        return "empty" if not item.expected else "non-empty"
    return "all"


def _quotas(n: int, ratios: Sequence[float]) -> list[int]:
    """`n` split by `ratios` with largest remainders: the counts sum to n."""
    raw = [n * r for r in ratios]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _stratified_quotas(sizes: Sequence[int], ratios: Sequence[float]) -> list[list[int]]:
    """Per-stratum counts by split whose running totals follow the ratios: ten classes of 5 items at 80/10/10
    give 5 test items in all, where rounding each class alone would give none."""
    out: list[list[int]] = []
    given = [0] * len(ratios)
    total = 0
    for n in sizes:
        total += n
        ideal = _quotas(total, ratios)
        q = [max(0, a - b) for a, b in zip(ideal, given, strict=True)]
        while sum(q) > n:  # only after clamping a negative: take back from the split furthest ahead
            q[max(range(len(q)), key=lambda j: (q[j] > 0, given[j] + q[j] - ideal[j]))] -= 1
        out.append(q)
        given = [g + x for g, x in zip(given, q, strict=True)]
    return out


def assign_splits(
    task: Task,
    items: Sequence[Item],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    names: Sequence[str] = SPLITS,
    progress: bool = False,
) -> tuple[dict[str, list[Item]], int]:
    """Split items into `names` by `ratios`: stratified, near-duplicate groups kept whole, seeded.

    Returns ({split: items}, number of multi-item groups kept together).
    """
    ordered = sorted(items, key=lambda i: (content_hash(i.inputs), i.id))
    by_id = {i.id: i for i in ordered}
    with Bar(progress, "grouping near duplicates", total=len(ordered), unit="items") as bar:
        groups = clusters([(i.id, item_text(i.inputs)) for i in ordered], threshold, bar.advance)
    units: dict[str, list[list[Item]]] = defaultdict(list)
    for group in groups:
        members = [by_id[str(k)] for k in group]
        units[stratum(task, members[0])].append(members)
    out: dict[str, list[Item]] = {name: [] for name in names}
    keys = sorted(units)
    quotas = _stratified_quotas([sum(len(u) for u in units[k]) for k in keys], ratios)
    for key, target in zip(keys, quotas, strict=True):
        rng = random.Random(f"{seed}:{key}")
        stratum_units = units[key]
        rng.shuffle(stratum_units)
        got = [0] * len(names)
        for unit in stratum_units:
            # the split furthest below its quota takes the unit (ties: earlier split, i.e. train first)
            s = max(range(len(names)), key=lambda j: (target[j] - got[j], -j))
            out[names[s]].extend(unit)
            got[s] += len(unit)
    # strata were filled one after another: mix them, so that the first N items of a file (`eval --limit`)
    # are not all one class
    for name in names:
        random.Random(f"{seed}:order:{name}").shuffle(out[name])
    return out, sum(1 for g in groups if len(g) > 1)


@dataclass
class SplitReport:
    """What `split_task` did."""

    counts: dict[str, dict[str, int]]  # split → stratum → n
    groups_kept_together: int
    locked: str  # "created" | "kept" | "relocked"
    lock_file: Path
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (id, why)
    paths: dict[str, Path] = field(default_factory=dict)


def _pool(
    task: Task, inputs: Sequence[Path], mapping: dict[str, str] | None, include: Sequence[str]
) -> list[Item]:
    """Items of the task's current splits in `include` plus the input files, each (id, content) once."""
    sourced: list[tuple[Item, Path]] = []
    for split in include:
        try:
            path = task.split_path(split)
        except TaskError:
            continue
        if path.exists():
            sourced += [(i, path) for i in load_items(task, split, path=path)]
    for src in inputs:
        sourced += [(i, Path(src)) for i in import_items(task, Path(src), mapping=dict(mapping or {}))]
    seen: dict[str, tuple[Item, Path]] = {}
    unique: list[Item] = []
    for item, path in sourced:
        if item.id not in seen:
            seen[item.id] = (item, path)
            unique.append(item)
            continue
        twin, twin_path = seen[item.id]
        if (twin.inputs, twin.expected) != (item.inputs, item.expected):
            raise DataError(
                f"two different items share the id {item.id!r} ({twin_path}:{twin.line} and "
                f"{path}:{item.line}); give one of them another id, or import with --id-prefix"
            )
    return unique


def split_task(
    task: Task,
    inputs: Sequence[Path] = (),
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    relock: bool = False,
    resplit: bool = False,
    mapping: dict[str, str] | None = None,
    progress: bool = False,
) -> SplitReport:
    """(Re)write the task's train/val/test files from its current splits plus `inputs`, and lock test.

    Without a lock, everything is split by `ratios` and the test file is locked. With a lock, the locked test
    items stay as they are (the test file is verified first) and only train/val are re-split; items that are a
    locked item or a near duplicate of one are dropped from them. `relock` accepts the test file as it is now;
    `resplit` (with `relock`) redraws the test set too.
    """
    paths = {s: task.split_path(s) for s in SPLITS}
    lock = read_lock(task)
    if resplit and lock is not None and not relock:
        raise DataError(
            f"--resplit would redraw the locked test set ({lock.path}); add --relock to confirm that "
            "you mean to change the set every gate is measured on"
        )
    redraw = lock is None or resplit
    if redraw:
        pool = _pool(task, inputs, mapping, SPLITS)
        if not pool:
            raise DataError(f"nothing to split: {task.root} has no data files yet; pass --input FILE")
        splits, together = assign_splits(task, pool, ratios, seed, threshold, progress=progress)
        if not splits["test"]:
            raise DataError(
                f"the split leaves the test set empty ({len(pool)} items, ratios {ratios}); "
                "add data or raise the test ratio"
            )
        dropped: list[tuple[str, str]] = []
        state = "created" if lock is None else "relocked"
    else:
        test = load_items(task, "test", path=paths["test"]) if relock else load_items(task, "test")
        splits, together, dropped = _around_lock(
            task, test, _pool(task, inputs, mapping, ("train", "val")), ratios, seed, threshold, progress
        )
        state = "relocked" if relock else "kept"
    for name in ("train", "val"):
        write_items(task, paths[name], splits[name])
    if state != "kept":
        write_jsonl(paths["test"], [item_row(task, i) for i in splits["test"]])
        write_lock(task, splits["test"])
    counts = {name: dict(sorted(Counter(stratum(task, i) for i in splits[name]).items())) for name in SPLITS}
    return SplitReport(counts, together, state, lock_path(task), dropped, paths)


def _around_lock(
    task: Task,
    test: list[Item],
    pool: list[Item],
    ratios: Sequence[float],
    seed: int,
    threshold: float,
    progress: bool = False,
) -> tuple[dict[str, list[Item]], int, list[tuple[str, str]]]:
    """Split `pool` into train/val only, leaving out copies and near copies of the locked `test` items."""
    from honed.data.dedup import NearDuplicateIndex

    locked = {content_hash(i.inputs): i.id for i in test}
    dropped: list[tuple[str, str]] = []
    clean = []
    for item in pool:
        twin = locked.get(content_hash(item.inputs))
        if twin is not None:
            dropped.append((item.id, f"same input as locked test item {twin!r}"))
        else:
            clean.append(item)
    index = NearDuplicateIndex(threshold)
    index.add_many([(i.id, item_text(i.inputs)) for i in test])
    near = {}
    for m in index.query_many([(i.id, item_text(i.inputs)) for i in clean]):
        near.setdefault(m.key, (m.other, m.jaccard))
    for item_id, (other, j) in near.items():
        dropped.append((str(item_id), f"near duplicate (Jaccard {j:.2f}) of locked test item {other!r}"))
    clean = [i for i in clean if i.id not in near]
    if not clean:
        raise DataError("after leaving out copies of locked test items there is nothing left to train on")
    train_val = (ratios[0], ratios[1])
    splits, together = assign_splits(
        task,
        clean,
        [r / sum(train_val) for r in train_val],
        seed,
        threshold,
        names=("train", "val"),
        progress=progress,
    )
    splits["test"] = test
    return splits, together, dropped

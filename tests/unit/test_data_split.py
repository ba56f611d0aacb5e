"""Split: deterministic, stratified, near duplicates kept together; the test set locked by content hash."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from honed.data.io import write_items
from honed.data.lock import assert_not_locked, lock_path, read_lock
from honed.data.split import assign_splits, parse_ratios, split_task
from honed.errors import DataError
from honed.task import Item, load_items, load_task
from tests.conftest import write_task

pytestmark = pytest.mark.unit

TOML = """
name = "tri"
kind = "classify"
[data]
train = "data/train.jsonl"
val = "data/val.jsonl"
test = "data/test.jsonl"
[prompt]
template = "Message: {{ text }}\\nAnswer with one of: {{ labels | join(', ') }}, or {{ none_label }}."
[classify]
labels = ["billing", "shipping", "login"]
none_label = "NONE"
"""

_WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "amber",
    "birch",
    "cedar",
    "dune",
    "ember",
    "fjord",
    "grove",
    "heath",
    "inlet",
    "jade",
    "kelp",
    "lagoon",
    "marsh",
    "nectar",
    "onyx",
    "pine",
    "quartz",
    "reef",
    "sage",
    "thorn",
    "umber",
    "vale",
    "willow",
    "yarrow",
    "zinc",
]
SIZES = {"billing": 60, "shipping": 40, "login": 25, "NONE": 15}


def _rows(seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for label, n in SIZES.items():
        for i in range(n):
            text = " ".join(rng.sample(_WORDS, 9)) + f" {label} {i}"
            rows.append({"id": f"{label}-{i:03d}", "text": text, "expected": label})
    return rows


def _task(root: Path, rows: list[dict] | None = None) -> Path:
    folder = write_task(root, TOML)
    (folder / "all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (rows or _rows())))
    return folder


def _files(folder: Path) -> dict[str, str]:
    return {s: (folder / "data" / f"{s}.jsonl").read_text() for s in ("train", "val", "test")}


def test_parse_ratios() -> None:
    assert parse_ratios("80/10/10") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_ratios("8,1,1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("80/20", "a/b/c", "0/50/50", "-1/1/1"):
        with pytest.raises(DataError, match="--ratios"):
            parse_ratios(bad)


def test_split_is_deterministic_and_order_independent(tmp_path: Path) -> None:
    a = _task(tmp_path / "a")
    split_task(load_task(a), [a / "all.jsonl"], seed=3)
    rows = _rows()
    random.Random(9).shuffle(rows)
    b = _task(tmp_path / "b", rows)
    split_task(load_task(b), [b / "all.jsonl"], seed=3)
    ids = {s: sorted(json.loads(line)["id"] for line in text.splitlines()) for s, text in _files(a).items()}
    ids_b = {s: sorted(json.loads(line)["id"] for line in text.splitlines()) for s, text in _files(b).items()}
    assert ids == ids_b
    c = _task(tmp_path / "c")
    split_task(load_task(c), [c / "all.jsonl"], seed=4)
    assert _files(c)["test"] != _files(a)["test"]


def test_split_is_stratified(tmp_path: Path) -> None:
    folder = _task(tmp_path / "t")
    report = split_task(load_task(folder), [folder / "all.jsonl"])
    for label, n in SIZES.items():
        for split, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
            assert abs(report.counts[split].get(label, 0) - n * share) <= 1, (label, split)
    assert sum(sum(c.values()) for c in report.counts.values()) == sum(SIZES.values())
    assert report.locked == "created" and lock_path(load_task(folder)).exists()


def test_near_duplicates_stay_in_one_split(tmp_path: Path) -> None:
    rows = _rows()
    twins = [dict(r, id=r["id"] + "-copy", text=r["text"].upper() + "!") for r in rows[:30]]
    task = load_task(_task(tmp_path / "t"))
    items = [Item(r["id"], {"text": r["text"]}, r["expected"]) for r in rows + twins]
    splits, together = assign_splits(task, items, seed=0)
    where = {i.id: s for s, its in splits.items() for i in its}
    assert together == 30
    assert all(where[r["id"]] == where[r["id"] + "-copy"] for r in rows[:30])


def test_changed_locked_test_set_is_refused(tmp_path: Path) -> None:
    folder = _task(tmp_path / "t")
    task = load_task(folder)
    split_task(task, [folder / "all.jsonl"])
    test_file = folder / "data" / "test.jsonl"
    original = test_file.read_text()
    rows = [json.loads(line) for line in original.splitlines()]
    assert len(load_items(task, "test")) == len(rows)  # untouched: loads

    changed = [dict(rows[0], expected="NONE" if rows[0]["expected"] != "NONE" else "billing")] + rows[1:]
    test_file.write_text("".join(json.dumps(r) + "\n" for r in changed))
    with pytest.raises(DataError) as err:
        load_items(task, "test")
    msg = str(err.value)
    assert "expected answer changed" in msg and rows[0]["id"] in msg and "--relock" in msg

    test_file.write_text(
        original + json.dumps({"id": "sneaky", "text": "new one", "expected": "NONE"}) + "\n"
    )
    with pytest.raises(DataError, match="added: 'sneaky'"):
        load_items(task, "test")

    renamed = [dict(rows[0], id="renamed")] + rows[1:]
    test_file.write_text("".join(json.dumps(r) + "\n" for r in renamed))
    with pytest.raises(DataError, match=f"renamed: '{rows[0]['id']} → renamed'"):
        load_items(task, "test")

    test_file.write_text(original)
    with pytest.raises(DataError, match="locked test file"):
        write_items(task, test_file, [])


def test_resplit_needs_relock_and_relock_accepts_an_edit(tmp_path: Path) -> None:
    folder = _task(tmp_path / "t")
    task = load_task(folder)
    split_task(task, [folder / "all.jsonl"])
    with pytest.raises(DataError, match="add --relock"):
        split_task(task, resplit=True)
    test_file = folder / "data" / "test.jsonl"
    rows = [json.loads(line) for line in test_file.read_text().splitlines()]
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))  # a deliberate removal
    with pytest.raises(DataError, match="removed"):
        split_task(task)
    report = split_task(task, relock=True)
    assert report.locked == "relocked" and len(read_lock(task).items) == len(rows) - 1
    assert len(load_items(task, "test")) == len(rows) - 1


def test_resplit_around_the_lock_leaves_out_copies_of_test_items(tmp_path: Path) -> None:
    folder = _task(tmp_path / "t")
    task = load_task(folder)
    split_task(task, [folder / "all.jsonl"])
    before = _files(folder)["test"]
    test_rows = [json.loads(line) for line in before.splitlines()]
    extra = [
        dict(test_rows[0], id="copy-under-new-id"),
        dict(test_rows[1], id="near-copy", text=test_rows[1]["text"].upper() + " !!"),
        {"id": "fresh", "text": "a genuinely new message about a refund", "expected": "billing"},
    ]
    (folder / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in extra))
    report = split_task(task, [folder / "more.jsonl"], seed=1)
    assert report.locked == "kept" and _files(folder)["test"] == before
    reasons = dict(report.dropped)
    assert "same input as locked test item" in reasons["copy-under-new-id"]
    assert "near duplicate" in reasons["near-copy"]
    train_val = {json.loads(line)["id"] for s in ("train", "val") for line in _files(folder)[s].splitlines()}
    assert "fresh" in train_val and not {"copy-under-new-id", "near-copy"} & train_val


def test_assert_not_locked(tmp_path: Path) -> None:
    folder = _task(tmp_path / "t")
    task = load_task(folder)
    assert_not_locked(task, [Item("x", {"text": "anything"}, "NONE")])  # no lock yet: nothing to protect
    split_task(task, [folder / "all.jsonl"])
    train = load_items(task, "train")
    assert_not_locked(task, train)  # a clean split passes
    t0, t1 = load_items(task, "test")[:2]
    leak = train + [
        Item("renamed-copy", dict(t0.inputs), t0.expected),
        Item("rephrased", {"text": t1.inputs["text"].replace(" ", "  ").title()}, t1.expected),
    ]
    with pytest.raises(DataError) as err:
        assert_not_locked(task, leak)
    msg = str(err.value)
    assert f"'renamed-copy' has the same input as locked test item '{t0.id}'" in msg
    assert f"'rephrased' is a near duplicate (Jaccard 1.00) of locked test item '{t1.id}'" in msg


def test_split_reports_missing_data_paths_and_empty_pools(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "bare", TOML)
    with pytest.raises(DataError, match="nothing to split"):
        split_task(load_task(folder))
    shutil.rmtree(folder)


def test_one_id_for_two_different_items_is_refused(tmp_path: Path) -> None:
    folder = _task(tmp_path / "t")
    (folder / "more.jsonl").write_text(
        json.dumps({"id": "billing-000", "text": "other", "expected": "NONE"}) + "\n"
    )
    with pytest.raises(DataError, match=r"share the id 'billing-000' \(.*all.jsonl:1 and .*more.jsonl:1\)"):
        split_task(load_task(folder), [folder / "all.jsonl", folder / "more.jsonl"])


def test_written_splits_mix_the_classes(tmp_path: Path) -> None:
    folder = _task(tmp_path / "t")
    split_task(load_task(folder), [folder / "all.jsonl"])
    first = [json.loads(line)["expected"] for line in _files(folder)["train"].splitlines()[:20]]
    assert len(set(first)) >= 3  # not 20 items of one class, as strata filled one after another would give

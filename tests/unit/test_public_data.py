"""honed.data.public: Banking77 and Restaurant-8k → task folders, built from the shared data folder."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from honed.data.public import banking77_label, banking77_none, default_data_dir, restaurant8k
from honed.errors import DataError
from honed.task import Item, load_items, load_task

pytestmark = pytest.mark.unit

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def data_dir() -> Path:
    try:
        path = default_data_dir()
    except DataError as exc:
        pytest.skip(f"public data sets not available: {exc}")
    for needed in ("banking77/train.csv", "restaurant8k/test.json"):
        if not (path / needed).is_file():
            pytest.skip(f"public data sets not available: {path / needed} is missing")
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _items(folder: Path) -> dict[str, list[Item]]:
    task = load_task(folder)
    return {split: load_items(task, split) for split in SPLITS}


# ---- Banking77


@pytest.fixture(scope="module")
def banking(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return banking77_none(tmp_path_factory.mktemp("b77") / "task", data_dir=data_dir, seed=0)


def _banking_intent_of(data_dir: Path) -> dict[str, str]:
    intent_of: dict[str, str] = {}
    for name in ("train.csv", "test.csv"):
        with (data_dir / "banking77" / name).open(encoding="utf-8", newline="") as fh:
            intent_of.update((row["text"].strip(), row["category"]) for row in csv.DictReader(fh))
    return intent_of


def test_banking77_loads_with_expected_counts(banking: Path) -> None:
    task = load_task(banking)
    assert task.kind == "classify" and task.none_label == "NONE"
    assert len(task.spec.classify.labels) == 10  # type: ignore[union-attr]
    items = _items(banking)
    for split, per_label, n_none in (("train", 24, 48), ("val", 6, 12), ("test", 15, 30)):
        counts = Counter(i.expected for i in items[split])
        assert counts.pop("NONE") == n_none, split
        assert set(counts) == set(task.spec.classify.labels)  # type: ignore[union-attr]
        assert set(counts.values()) == {per_label}, split
    assert "reverted_card_payment?" not in task.labels  # the source's stray "?" is dropped


def test_banking77_none_items_come_only_from_held_out_intents(banking: Path, data_dir: Path) -> None:
    task = load_task(banking)
    intent_of = _banking_intent_of(data_dir)
    source = (banking / "SOURCE.txt").read_text(encoding="utf-8")
    held_out = next(line for line in source.splitlines() if line.startswith("held_out_as_NONE"))
    held_out_intents = set(held_out.split(": ", 1)[1].split(", "))
    assert len(held_out_intents) == 4
    none_intents: set[str] = set()
    for split, items in _items(banking).items():
        for item in items:
            intent = intent_of[item.inputs["text"]]
            if item.expected == "NONE":
                none_intents.add(intent)
                assert banking77_label(intent) not in task.labels
            else:
                assert banking77_label(intent) == item.expected, (split, item.id)
    assert none_intents == held_out_intents


def test_banking77_train_and_test_do_not_overlap(banking: Path) -> None:
    items = _items(banking)
    seen = [i.inputs["text"] for split in SPLITS for i in items[split]]
    assert len(seen) == len(set(seen))


def test_banking77_is_deterministic_by_seed(banking: Path, data_dir: Path, tmp_path: Path) -> None:
    again = banking77_none(tmp_path / "again", data_dir=data_dir, seed=0)
    other = banking77_none(tmp_path / "other", data_dir=data_dir, seed=1)
    assert _files(again) == _files(banking)
    assert load_task(other).labels != load_task(banking).labels


def test_banking77_rejects_impossible_sizes(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="n_labels"):
        banking77_none(tmp_path / "x", data_dir=data_dir, n_labels=70, n_none=10)
    with pytest.raises(DataError, match="lower the per-label sizes"):
        banking77_none(tmp_path / "y", data_dir=data_dir, test_per_label=41)


# ---- Restaurant-8k


@pytest.fixture(scope="module")
def restaurant(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return restaurant8k(tmp_path_factory.mktemp("r8k") / "task", data_dir=data_dir, seed=0)


def test_restaurant8k_loads_with_expected_counts(restaurant: Path) -> None:
    task = load_task(restaurant)
    assert task.kind == "extract" and task.schema is not None
    assert task.schema["additionalProperties"] is False
    items = _items(restaurant)
    assert {split: len(v) for split, v in items.items()} == {"train": 320, "val": 80, "test": 150}


def test_restaurant8k_values_are_spans_of_the_text(restaurant: Path) -> None:
    for items in _items(restaurant).values():
        for item in items:
            assert isinstance(item.inputs["requested_slots"], list)
            for slot, value in item.expected.items():
                assert value and value in item.inputs["text"], (item.id, slot, value)


def test_restaurant8k_keeps_the_share_of_empty_answers(restaurant: Path, data_dir: Path) -> None:
    source = json.loads((data_dir / "restaurant8k" / "test.json").read_text(encoding="utf-8"))
    source_share = sum(not ex.get("labels") for ex in source) / len(source)
    for split, items in _items(restaurant).items():
        empty = sum(item.expected == {} for item in items)
        assert empty > 0, split
        assert abs(empty / len(items) - source_share) < 0.05, split


def test_restaurant8k_test_texts_are_not_in_train(restaurant: Path) -> None:
    items = _items(restaurant)
    test_texts = {i.inputs["text"] for i in items["test"]}
    assert not test_texts & {i.inputs["text"] for split in ("train", "val") for i in items[split]}


def test_restaurant8k_is_deterministic_by_seed(restaurant: Path, data_dir: Path, tmp_path: Path) -> None:
    again = restaurant8k(tmp_path / "again", data_dir=data_dir, seed=0)
    other = restaurant8k(tmp_path / "other", data_dir=data_dir, seed=1)
    assert _files(again) == _files(restaurant)
    texts = {i.inputs["text"] for i in _items(restaurant)["test"]}
    assert texts != {i.inputs["text"] for i in _items(other)["test"]}


# ---- the data folder


def test_missing_data_dir_is_an_actionable_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HONED_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="HONED_SHARED_DATA"):
        default_data_dir()
    with pytest.raises(DataError, match="banking77/categories.json"):
        banking77_none(tmp_path / "t", data_dir=tmp_path)

"""honed.data.public: Banking77 and Restaurant-8k → task folders, built from the data folder the caller names
(the project's tests read ../shared/data beside the repository, never a machine path)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from honed.data.public import SOURCE_FILES, banking77_label, banking77_none, restaurant8k
from honed.errors import DataError
from honed.task import Item, load_items, load_task
from tests.conftest import REPO

pytestmark = pytest.mark.unit

SPLITS = ("train", "val", "test")
DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    for dataset, names in SOURCE_FILES.items():
        for name in names:
            if not (DATA / dataset / name).is_file():
                pytest.skip(f"public data sets not available: {DATA / dataset / name} is missing")
    return DATA


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


def _honed_data(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "honed", "data", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=120, check=False)


def test_a_folder_without_the_files_names_the_missing_one(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"banking77/categories\.json: not found; the banking77 data set is built "
                                        r"from banking77/categories\.json, banking77/train\.csv, banking77/test\.csv"):
        banking77_none(tmp_path / "t", data_dir=tmp_path)
    (tmp_path / "banking77").mkdir()
    (tmp_path / "banking77" / "categories.json").write_text("[]")
    with pytest.raises(DataError, match=r"banking77/train\.csv: not found"):  # checked before any output
        banking77_none(tmp_path / "t", data_dir=tmp_path)
    assert not (tmp_path / "t").exists()
    with pytest.raises(DataError, match=r"restaurant8k/train_0\.json: not found"):
        restaurant8k(tmp_path / "r", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"nowhere: not a folder; the data folder \(--from DIR\) must hold "
                                        r"restaurant8k/train_0\.json, restaurant8k/test\.json"):
        restaurant8k(tmp_path / "r", data_dir=tmp_path / "nowhere")


def test_cli_needs_from_and_says_what_the_folder_holds(tmp_path: Path) -> None:
    run = _honed_data("public", "banking77-none", "--out", str(tmp_path / "t"))
    assert run.returncode == 2, run.stderr  # a UserError
    assert "needs --from DIR, the folder that holds banking77/categories.json, banking77/train.csv, " \
           "banking77/test.csv" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "t").exists()
    run = _honed_data("public", "restaurant8k", "--out", str(tmp_path / "t"), "--from", str(tmp_path))
    assert run.returncode == 2 and "restaurant8k/train_0.json: not found" in run.stderr, run.stderr


def test_cli_builds_the_task_from_the_named_folder(data_dir: Path, restaurant: Path, tmp_path: Path) -> None:
    # the folder relative to the working directory, as a user types it
    rel = os.path.relpath(data_dir, REPO)
    run = subprocess.run([sys.executable, "-m", "honed", "data", "public", "restaurant8k", "--out",
                          str(tmp_path / "t"), "--from", rel], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "COLUMNS": "200"}, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert "train 320, val 80, test 150 items" in run.stdout
    assert _files(tmp_path / "t") == _files(restaurant)

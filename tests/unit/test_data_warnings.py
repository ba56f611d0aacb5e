"""Warnings `stats` prints and `tune` repeats: few examples, small classes, imbalance, long completions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.data.stats import dataset_stats, stats_tables
from honed.data.warnings import data_warnings, estimate_tokens
from honed.task import Item, load_task
from tests.conftest import CLASSIFY_TOML, EXAMPLES, write_task

pytestmark = pytest.mark.unit


def _items(counts: dict[str, int]) -> list[Item]:
    return [
        Item(f"{label}-{i}", {"text": f"{label} message number {i}"}, label)
        for label, n in counts.items()
        for i in range(n)
    ]


def test_healthy_data_has_no_warnings(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "t", CLASSIFY_TOML))
    assert data_warnings(task, _items({"billing": 200, "shipping": 200, "NONE": 150})) == []


def test_each_warning(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "t", CLASSIFY_TOML))
    found = {w.code: w.message for w in data_warnings(task, _items({"billing": 300, "shipping": 12}))}
    assert set(found) == {"few_examples", "empty_class", "small_class", "imbalance"}
    assert "312 training examples" in found["few_examples"]
    assert "NONE" in found["empty_class"] and "shipping (12)" in found["small_class"]
    assert "billing has 300 examples, shipping only 12 (25x)" in found["imbalance"]


def test_long_completions_against_the_budget() -> None:
    task = load_task(EXAMPLES / "extract")
    long = {"entities": [{"name": "x" * 900, "type": "service"}], "relationships": []}
    items = [
        Item("short", {"sentence": "a"}, {"entities": [], "relationships": []}),
        Item("long", {"sentence": "b"}, long),
    ]
    (w,) = [w for w in data_warnings(task, items) if w.code == "long_completion"]
    assert "1 completion(s) longer than the 200-token generation budget (estimated" in w.message
    assert "long (" in w.message
    exact = [w for w in data_warnings(task, items, count_tokens=lambda s: 1) if w.code == "long_completion"]
    assert exact == []
    assert estimate_tokens("") == 0 and estimate_tokens("abcdefg") == 2


def test_stats_document_and_tables(tmp_path: Path) -> None:
    task = load_task(EXAMPLES / "classify")
    doc = dataset_stats(task)
    assert {s: doc["splits"][s]["n"] for s in ("train", "val", "test")} == {
        "train": 200,
        "val": 40,
        "test": 40,
    }
    assert doc["splits"]["train"]["classes"]["NONE"] > 0 and doc["lock"] == {"locked": False}
    assert [w["code"] for w in doc["warnings"]] == ["few_examples"]
    assert len(stats_tables(doc)) >= 3
    json.dumps(doc)

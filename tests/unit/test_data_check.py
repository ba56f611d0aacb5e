"""`check`: planted exact and near duplicates across splits are found and reported as contamination."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from honed.data.check import check_tables, check_task
from honed.data.lock import write_lock
from honed.task import load_items, load_task
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.unit


def test_planted_contamination_is_found(tmp_path: Path) -> None:
    folder = tmp_path / "triage"
    shutil.copytree(EXAMPLES / "classify", folder)
    task = load_task(folder)
    write_lock(task, load_items(task, "test"))
    clean = check_task(task)
    assert clean["ok"] and clean["cross_split_pairs"] == [] and clean["contaminated"]["test"]["n"] == 0

    test, val = load_items(task, "test"), load_items(task, "val")
    planted = [
        {"id": "plant-exact", **test[0].inputs, "expected": test[0].expected},
        {"id": "plant-near", "text": test[5].inputs["text"].lower().rstrip(".!?") + "!!", "expected": "NONE"},
        {"id": "plant-val", "text": "  " + val[2].inputs["text"].upper(), "expected": val[2].expected},
    ]
    with (folder / "data" / "train.jsonl").open("a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in planted)
    doc = check_task(task)
    assert not doc["ok"]
    found = {(p["b_split"], p["b_id"], p["a_split"], p["a_id"], p["kind"]) for p in doc["cross_split_pairs"]}
    assert found == {
        ("test", test[0].id, "train", "plant-exact", "exact"),
        ("test", test[5].id, "train", "plant-near", "near"),
        ("val", val[2].id, "train", "plant-val", "near"),
    }
    assert doc["contaminated"]["test"] == {"n": 2, "rate": 0.05, "ids": sorted([test[0].id, test[5].id])}
    assert doc["contaminated"]["val"]["n"] == 1 and doc["n_exact"] == 1 and doc["n_near"] == 2
    assert all(p["jaccard"] >= 0.7 for p in doc["cross_split_pairs"])
    assert len(check_tables(doc)) >= 3


def test_a_broken_lock_is_reported_not_raised(tmp_path: Path) -> None:
    folder = tmp_path / "triage"
    shutil.copytree(EXAMPLES / "classify", folder)
    task = load_task(folder)
    test = load_items(task, "test")
    write_lock(task, test[1:])
    doc = check_task(task)
    assert not doc["ok"] and doc["lock"]["violations"] == {"added": [test[0].id]}

"""Near-duplicate detection: planted pairs are found with their exact Jaccard, unrelated texts are not."""

from __future__ import annotations

import random

import pytest

from honed.data.dedup import (
    NearDuplicateIndex,
    clusters,
    content_hash,
    cross_duplicates,
    dedupe,
    item_text,
    jaccard,
    normalize,
    shingles,
    within_duplicates,
)
from honed.task import load_items, load_task
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.unit


def test_content_hash_ignores_key_order_not_values() -> None:
    assert content_hash({"a": 1, "b": "x"}) == content_hash({"b": "x", "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert len(content_hash({})) == 64


def test_normalize_and_shingles() -> None:
    assert normalize("  Where is MY parcel??  ") == "where is my parcel"
    assert shingles("Hi!") == {b"hi"}
    assert jaccard(shingles("Where is my parcel?"), shingles("where is my parcel??")) == 1.0
    assert item_text({"b": ["x", "y"], "a": "text"}) == 'text\n["x", "y"]'


def test_planted_near_duplicates_are_found_with_exact_jaccard() -> None:
    base = [
        f"ticket {i}: "
        + " ".join(
            random.Random(i).choice(
                [
                    "refund",
                    "parcel",
                    "login",
                    "invoice",
                    "crash",
                    "password",
                    "delivery",
                    "card",
                    "app",
                    "order",
                ]
            )
            for _ in range(12)
        )
        for i in range(200)
    ]
    indexed = [(f"train-{i}", t) for i, t in enumerate(base)]
    planted = {
        "q-0": base[3].upper() + "!!",
        "q-1": base[50].replace("ticket 50:", "Ticket 50 -"),
        "q-2": "an entirely different sentence about the weather in Lisbon",
    }
    found = cross_duplicates(indexed, list(planted.items()))
    pairs = {(m.key, m.other) for m in found}
    assert ("q-0", "train-3") in pairs and ("q-1", "train-50") in pairs
    assert not any(m.key == "q-2" for m in found)
    for m in found:
        exact = jaccard(shingles(planted[str(m.key)]), shingles(base[int(str(m.other).split("-")[1])]))
        assert m.jaccard == pytest.approx(exact, abs=1e-4) and m.jaccard >= 0.7


def test_within_duplicates_clusters_and_dedupe() -> None:
    texts = [
        ("a", "The driver left the parcel in the rain, everything's soaked."),
        ("b", "Please add a dark mode to the app."),
        ("c", "the driver left the parcel in the rain - everything is soaked!"),
        ("d", "THE DRIVER LEFT THE PARCEL IN THE RAIN, EVERYTHING'S SOAKED"),
    ]
    pairs = within_duplicates(texts)
    assert {(m.key, m.other) for m in pairs} == {("a", "c"), ("a", "d"), ("c", "d")}
    assert sorted(map(sorted, clusters(texts))) == [["a", "c", "d"], ["b"]]
    kept, dropped = dedupe(texts)
    assert kept == ["a", "b"] and set(dropped) == {"c", "d"} and dropped["d"][0] == "a"


def test_no_false_positives_between_example_splits() -> None:
    # examples/README.md promises no cross-split near duplicates (4-gram Jaccard <= 0.24)
    task = load_task(EXAMPLES / "classify")
    train = [(i.id, item_text(i.inputs)) for i in load_items(task, "train")]
    test = [(i.id, item_text(i.inputs)) for i in load_items(task, "test")]
    assert cross_duplicates(train, test) == []


def test_index_refuses_duplicate_keys_and_bad_threshold() -> None:
    index = NearDuplicateIndex()
    index.add_many([("x", "hello world")])
    with pytest.raises(ValueError, match="already indexed"):
        index.add_many([("x", "other")])
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateIndex(threshold=0.0)

"""Task metrics (honed.evaluate.scorers) against scikit-learn and hand-computed cases."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from honed.evaluate.scorers import (
    classification_report,
    consistency,
    extract_report,
    flatten_json,
    flatten_records,
    generate_report,
    json_equal,
    pick_report,
)

pytestmark = pytest.mark.unit

SENTINEL = "\x00invalid"  # what None becomes for scikit-learn: a string no label can be


def _assert_matches_sklearn(
    y_true: list[str], y_pred: list[str | None], labels: list[str] | None = None
) -> None:
    report = classification_report(y_true, y_pred, labels)
    classes = labels if labels is not None else sorted(set(y_true) | {p for p in y_pred if p is not None})
    sk_pred = [SENTINEL if p is None or p not in classes else p for p in y_pred]
    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, sk_pred))
    assert report["macro_f1"] == pytest.approx(
        f1_score(y_true, sk_pred, labels=classes, average="macro", zero_division=0))
    p, r, f, s = precision_recall_fscore_support(y_true, sk_pred, labels=classes, zero_division=0)
    assert list(report["per_class"]) == classes
    for i, label in enumerate(classes):
        got = report["per_class"][label]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p[i], r[i], f[i]))
        assert got["support"] == s[i]
    invalid = any(x == SENTINEL for x in sk_pred)
    columns = classes + ([SENTINEL] if invalid else [])
    cm = confusion_matrix(y_true, sk_pred, labels=columns)[: len(classes)]
    assert report["confusion"]["labels"] == classes
    assert report["confusion"]["columns"] == classes + (["INVALID"] if invalid else [])
    assert report["confusion"]["matrix"] == cm.tolist()


@pytest.mark.parametrize("seed", range(8))
def test_classification_report_matches_sklearn_on_random_data(seed: int) -> None:
    rng = random.Random(seed)
    labels = [f"c{i}" for i in range(rng.randint(2, 6))]
    n = rng.randint(5, 60)
    y_true = [rng.choice(labels) for _ in range(n)]
    # Mostly right, some wrong, some invalid: like a model's outputs.
    y_pred = [t if rng.random() < 0.5 else (None if rng.random() < 0.3 else rng.choice(labels))
              for t in y_true]
    _assert_matches_sklearn(y_true, y_pred)
    _assert_matches_sklearn(y_true, y_pred, labels)


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        (["a", "a", "b", "c"], ["a", "a", "a", "a"]),  # b and c never predicted
        (["a", "b", "b"], [None, None, None]),  # every output invalid
        (["a", "b", "NONE"], ["NONE", "NONE", "NONE"]),  # collapse onto NONE
        (["a", "a", "a"], ["a", "a", "a"]),  # a single class, all right
        (["a", "a", "a"], ["a", None, "b"]),  # a single true class, a predicted-only class
        (["a", "b"], ["b", "a"]),
    ],
)
@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")  # scikit-learn's, not ours
def test_classification_report_edge_cases_match_sklearn(y_true: list[str], y_pred: list[str | None]) -> None:
    _assert_matches_sklearn(y_true, y_pred)


def test_classification_report_by_hand() -> None:
    report = classification_report(["a", "a", "b", "b"], ["a", None, "a", "b"])
    assert report["accuracy"] == 0.5
    assert report["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                        "support": 2}
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert report["confusion"]["matrix"] == [[1, 0, 1], [1, 1, 0]]


def test_invalid_is_never_a_class() -> None:
    report = classification_report(["a", "b"], [None, None])
    assert set(report["per_class"]) == {"a", "b"}
    assert report["accuracy"] == 0.0 and report["macro_f1"] == 0.0


def test_prediction_outside_given_labels_is_invalid() -> None:
    report = classification_report(["a", "b"], ["a", "zzz"], labels=["a", "b"])
    assert report["confusion"]["matrix"] == [[1, 0, 0], [0, 0, 1]]
    assert report["per_class"]["b"]["recall"] == 0.0


def test_classification_report_rejects_unknown_true_class_and_length_mismatch() -> None:
    with pytest.raises(ValueError):
        classification_report(["a", "x"], ["a", "a"], labels=["a", "b"])
    with pytest.raises(ValueError):
        classification_report(["a"], ["a", "b"])


def test_classification_report_empty() -> None:
    report = classification_report([], [])
    assert report["accuracy"] is None and report["macro_f1"] is None


# --- pick ---

def test_pick_report_counts_each_error_kind() -> None:
    expected: list[int | str] = [1, 2, "NONE", "NONE", 3, 2, 1]
    predicted: list[int | str | None] = [1, 3, 2, "NONE", "NONE", None, 1]
    report = pick_report(expected, predicted, "NONE")
    assert report["counts"] == {"false_pick": 1, "wrong_pick": 1, "false_none": 1, "invalid": 1}
    assert report["accuracy"] == pytest.approx(3 / 7)  # items 0, 3 and 6
    # PICK: 5 expected, 2 right (items 0, 6); predicted PICK 3 times (0, 6 and the false pick 2).
    assert report["per_class"]["PICK"]["recall"] == pytest.approx(2 / 5)
    assert report["per_class"]["PICK"]["precision"] == pytest.approx(2 / 3)
    # NONE: 2 expected, 1 right; predicted NONE twice (one false NONE).
    assert report["per_class"]["NONE"]["precision"] == pytest.approx(1 / 2)
    assert report["confusion"]["columns"] == ["NONE", "PICK", "WRONG_PICK", "INVALID"]
    assert report["confusion"]["matrix"] == [[1, 1, 0, 0], [1, 2, 1, 1]]


@pytest.mark.parametrize("seed", range(5))
def test_pick_accuracy_is_the_exact_match_rate(seed: int) -> None:
    rng = random.Random(seed)
    expected: list[int | str] = [rng.choice([1, 2, 3, "NONE"]) for _ in range(40)]
    predicted: list[int | str | None] = [rng.choice([1, 2, 3, "NONE", None]) for _ in range(40)]
    report = pick_report(expected, predicted, "NONE")
    exact = [e == p for e, p in zip(expected, predicted, strict=True)]
    assert report["accuracy"] == pytest.approx(np.mean(exact))


def test_pick_without_none_items_is_not_capped_by_an_empty_none_class() -> None:
    report = pick_report([1, 2, 3], [1, 2, 3], "NONE")
    assert report["macro_f1"] == 1.0
    assert list(report["per_class"]) == ["PICK"]


# --- extract ---

def test_flatten_json_paths_and_normalization() -> None:
    value = {"entities": [{"name": "  Acme   Corp ", "n": 3.0}, {"name": "Bob", "ok": True}], "note": None}
    assert flatten_json(value) == {
        ("entities[].name", "acme corp"), ("entities[].n", "3"), ("entities[].name", "bob"),
        ("entities[].ok", "true"), ("note", "null"),
    }
    assert flatten_json({"slots": []}) == set()
    assert flatten_json([1, 2]) == {("[]", "1"), ("[]", "2")}


def test_json_equal_ignores_case_whitespace_and_list_order_but_not_content() -> None:
    assert json_equal({"a": ["X", "y"], "b": 1}, {"b": 1.0, "a": ["Y ", "x"]})
    assert not json_equal({"a": ["x", "x"]}, {"a": ["x"]})  # lists are multisets
    # Flattened pairs lose which value went with which: exact match must not.
    swapped = [{"name": "a", "type": "Y"}, {"name": "b", "type": "X"}]
    original = [{"name": "a", "type": "X"}, {"name": "b", "type": "Y"}]
    assert flatten_json(original) == flatten_json(swapped)
    assert not json_equal(original, swapped)


def test_extract_report_by_hand() -> None:
    expected = [
        {"city": "Paris", "people": ["Ann", "Bob"]},
        {"city": "Rome", "people": []},
        {"city": None, "people": []},
    ]
    predicted = [
        {"city": "paris", "people": ["Ann", "Carl"]},  # city right, 1 of 2 people, 1 extra
        None,  # no JSON at all: misses everything
        {"city": None, "people": []},  # exact
    ]
    report = extract_report(expected, predicted, [True, False, True], [True, False, True])
    assert report["valid_json_rate"] == pytest.approx(2 / 3)
    assert report["schema_valid_rate"] == pytest.approx(2 / 3)
    assert report["exact_match"] == pytest.approx(1 / 3) == report["accuracy"]
    # pairs: expected 3 + 1 + 1 = 5; predicted 3 + 0 + 1 = 4; true positives: city paris, Ann, city null = 3
    assert report["field_precision"] == pytest.approx(3 / 4)
    assert report["field_recall"] == pytest.approx(3 / 5)
    assert report["field_f1"] == pytest.approx(2 * 3 / (4 + 5))
    assert report["per_field"]["city"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                           "f1": pytest.approx(0.8), "support": 3}
    assert report["per_field"]["people"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5) / 2)
    assert "entity_f1" not in report


def test_extract_items_that_are_empty_on_both_sides_contribute_nothing() -> None:
    one = extract_report([{"slots": {"time": "7pm"}}], [{"slots": {"time": "8pm"}}], [True], [True])
    with_empty = extract_report([{"slots": {"time": "7pm"}}, {"slots": {}}], [{"slots": {"time": "8pm"}}, {}],
                                [True, True], [True, True])
    assert one["field_f1"] == with_empty["field_f1"] == 0.0
    all_empty = extract_report([{"slots": {}}], [{"slots": {}}], [True], [True])
    assert all_empty["field_f1"] == 1.0 and all_empty["exact_match"] == 1.0
    assert all_empty["macro_f1"] is None  # no field has any value


def test_extract_report_entities_and_relationships() -> None:
    expected = [{
        "entities": [{"name": "Acme Corp", "type": "ORG"}, {"name": "Ann", "type": "PERSON"}],
        "relationships": [{"source": "Ann", "relation": "works at", "target": "Acme Corp"}],
    }]
    predicted = [{
        "entities": [{"name": "acme  corp", "type": "PERSON"}, {"name": "Berlin", "type": "LOC"}],
        "relationships": [{"source": "ann", "relation": "WORKS_AT", "target": "ACME CORP"},
                          {"source": "Ann", "relation": "lives in", "target": "Berlin"}],
    }]
    report = extract_report(expected, predicted, [True], [True], entities_key="entities",
                            relationships_key="relationships")
    assert (report["entity_precision"], report["entity_recall"], report["entity_f1"]) == (0.5, 0.5, 0.5)
    assert report["relationship_precision"] == 0.5
    assert report["relationship_recall"] == 1.0
    assert report["relationship_f1"] == pytest.approx(2 / 3)


def test_record_f1_counts_an_object_only_when_all_of_it_is_right() -> None:
    """The inverted relationship of examples/extract's test-013 ("CockroachDB is monitored by Grafana"): every
    field is right on its own, so field F1 is perfect; as a record it is wrong."""
    expected = [{"entities": [{"name": "Grafana", "type": "tool"}, {"name": "CockroachDB", "type": "datastore"}],
                 "relationships": [{"source": "Grafana", "relation": "MONITORS", "target": "CockroachDB"},
                                   {"source": "CockroachDB", "relation": "DEPLOYED_ON", "target": "Grafana"}]}]
    inverted = [{"entities": [{"name": "grafana", "type": "tool"}, {"name": "CockroachDB", "type": "datastore"}],
                 "relationships": [{"source": "CockroachDB", "relation": "MONITORS", "target": "Grafana"},
                                   {"source": "Grafana", "relation": "DEPLOYED_ON", "target": "CockroachDB"}]}]
    report = extract_report(expected, inverted, [True], [True])
    assert report["field_f1"] == 1.0
    # 2 entity records right (case-folded), 2 relationship records wrong: 2 of 4 on each side
    assert (report["record_precision"], report["record_recall"], report["record_f1"]) == (0.5, 0.5, 0.5)
    assert flatten_records({"tags": ["A", "b"], "n": 3, "rows": [{}, {"x": 1}]}) == {
        ("tags[]", "a"), ("tags[]", "b"), ("n", "3"), ("rows[]", '{"x": "1"}')}


def test_extract_report_survives_malformed_predictions() -> None:
    report = extract_report([{"entities": [{"name": "A"}]}], [{"entities": "oops"}], [True], [False],
                            entities_key="entities", relationships_key="relationships")
    assert report["entity_recall"] == 0.0
    assert report["relationship_f1"] == 1.0  # nothing expected, nothing predicted


# --- generate ---

def test_generate_report() -> None:
    outputs = ["# Title\nSummary: fine\nRisk: low", "Title\nSummary: TODO", "# T\nRisk: HIGH"]
    rules = [("heading", r"^# ", True), ("summary", r"^Summary:", True), ("no_todo", r"TODO", False)]
    keywords = [["risk", "summary"], ["risk"], []]
    report = generate_report(outputs, rules, keywords)
    assert report["per_rule"] == {"heading": pytest.approx(2 / 3), "summary": pytest.approx(2 / 3),
                                  "no_todo": pytest.approx(2 / 3)}
    assert report["format_pass_rate"] == pytest.approx(1 / 3) == report["accuracy"]
    # The third item has no keywords: skipped, not counted as 0 or 1.
    assert report["keyword_hit_rate"] == pytest.approx((1.0 + 0.0) / 2)
    assert report["macro_f1"] is None


def test_generate_report_without_rules_or_keywords() -> None:
    report = generate_report(["anything"], [], [[]])
    assert report["format_pass_rate"] == 1.0
    assert report["keyword_hit_rate"] is None


# --- consistency ---

def test_consistency() -> None:
    result = consistency([["a", "a", "a"], ["a", "b", "a"], [{"x": [1]}, {"x": [1]}, None]])
    assert result["all_agree_rate"] == pytest.approx(1 / 3)
    assert result["mean_agreement"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_consistency_needs_repeats() -> None:
    assert consistency([["a"], ["b"]])["all_agree_rate"] is None
    assert consistency([["a"], ["b"]])["mean_agreement"] is None
    assert consistency([["a"], ["b", "b"]])["all_agree_rate"] == 1.0  # the single-answer item is left out

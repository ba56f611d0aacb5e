"""Task metrics as pure functions: lists of expected and predicted answers in, a dict of numbers out.

No I/O and no knowledge of tasks or runs, so each function is tested against a reference (scikit-learn) and
hand-computed cases. A prediction of None always means "no valid answer": wrong, and never a class of its own.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from honed.task.relations import norm_name, norm_relation

INVALID = "INVALID"


def _prf(tp: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 per class; 0 where undefined (scikit-learn's zero_division=0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0)
        recall = np.where(n_true > 0, tp / np.maximum(n_true, 1), 0.0)
        denom = n_pred + n_true
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return precision, recall, f1


def _confusion(
    y_true: list[str], y_pred: list[str | None], rows: list[str], cols: list[str]
) -> list[list[int]]:
    """Counts of (true, predicted); a prediction outside `cols` lands in the last column (the invalid one)."""
    r_index = {label: i for i, label in enumerate(rows)}
    c_index = {label: i for i, label in enumerate(cols)}
    matrix = np.zeros((len(rows), len(cols)), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in r_index:
            matrix[r_index[t], c_index.get(p, len(cols) - 1) if p is not None else len(cols) - 1] += 1
    return matrix.tolist()


def classification_report(
    y_true: list[str], y_pred: list[str | None], labels: list[str] | None = None
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    The classes are `labels`, else every class seen in `y_true` or among the valid predictions (as
    scikit-learn does). A prediction that is None, or outside `labels`, is invalid: wrong for its true class
    and a false positive of no class. Confusion rows are true classes, columns predicted classes, plus a last
    "INVALID" column when any prediction is invalid. Raises ValueError for a true class outside `labels`.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    if labels is None:
        classes = sorted(set(y_true) | {p for p in y_pred if p is not None})
    else:
        classes = list(labels)
        unknown = set(y_true) - set(classes)
        if unknown:
            raise ValueError(f"true classes {sorted(unknown)} are not among labels {classes}")
    index = {label: i for i, label in enumerate(classes)}
    k = len(classes)
    t_idx = np.array([index[t] for t in y_true], dtype=int)
    p_idx = np.array([index.get(p, k) if p is not None else k for p in y_pred], dtype=int)  # k = invalid
    counts = np.zeros((k, k + 1), dtype=int)
    np.add.at(counts, (t_idx, p_idx), 1)
    tp = np.diag(counts[:, :k]).astype(float)
    precision, recall, f1 = _prf(tp, counts[:, :k].sum(axis=0), counts.sum(axis=1))
    any_invalid = bool((p_idx == k).any())
    return {
        "accuracy": float(np.mean(t_idx == p_idx)) if len(y_true) else None,
        "macro_f1": float(f1.mean()) if k else None,
        "per_class": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                    "support": int(counts[i].sum())}
            for i, label in enumerate(classes)
        },
        "confusion": {
            "labels": classes,
            "columns": classes + ([INVALID] if any_invalid else []),
            "matrix": (counts if any_invalid else counts[:, :k]).tolist(),
        },
    }


def pick_report(
    expected: list[int | str], predicted: list[int | str | None], none_label: str
) -> dict[str, Any]:
    """Scores of a pick task, whose answers are candidate numbers or `none_label`.

    Errors are counted apart: false_pick (a number where NONE was right), wrong_pick (the wrong number),
    false_none (NONE where a number was right), invalid (no answer). The classification fields are over
    outcomes: true "NONE"/"PICK", predicted "NONE", "PICK" (the right number, or any number where NONE was
    right) or "WRONG_PICK". Macro-F1 averages the outcome classes present in `expected`, so a test set without
    NONE items is not capped at 0.5 by an empty NONE class; a wrong pick costs PICK recall.
    """
    if len(expected) != len(predicted):
        raise ValueError(f"expected has {len(expected)} items but predicted has {len(predicted)}")
    counts = {"false_pick": 0, "wrong_pick": 0, "false_none": 0, "invalid": 0}
    y_true: list[str] = []
    y_pred: list[str | None] = []
    for exp, pred in zip(expected, predicted, strict=True):
        exp_none = exp == none_label
        y_true.append("NONE" if exp_none else "PICK")
        is_number = isinstance(pred, int) and not isinstance(pred, bool)
        if pred == none_label:
            y_pred.append("NONE")
            counts["false_none"] += not exp_none
        elif not is_number:
            y_pred.append(None)
            counts["invalid"] += 1
        elif exp_none or pred == exp:
            y_pred.append("PICK")
            counts["false_pick"] += exp_none
        else:
            y_pred.append("WRONG_PICK")
            counts["wrong_pick"] += 1
    # Outcome accuracy is the exact-match rate: only a right number or a right NONE matches its outcome.
    outcome_labels = [label for label in ("NONE", "PICK") if label in y_true]
    report = classification_report(y_true, y_pred, labels=outcome_labels)
    columns = ["NONE", "PICK", "WRONG_PICK"] + ([INVALID] if counts["invalid"] else [])
    report["confusion"] = {"labels": ["NONE", "PICK"], "columns": columns,
                           "matrix": _confusion(y_true, y_pred, ["NONE", "PICK"], columns)}
    report["counts"] = counts
    return report


def _norm_scalar(value: Any) -> str:
    if isinstance(value, str):
        return norm_name(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))  # 3.0 and 3 are the same answer
    return str(value)


def flatten_json(value: Any, prefix: str = "", *, records: bool = False) -> set[tuple[str, str]]:
    """(path, normalized value) pairs of a JSON value, list indices dropped: {"entities[].name": …}.

    Strings are lowercased with whitespace stripped and collapsed; numbers become strings (3.0 as "3");
    booleans and null their JSON text. Empty objects and lists contribute no pairs. With `records`, an object
    inside a list is one pair, whole: {"relationships[]": '{"relation": …, "source": …, "target": …}'} — a
    relationship with the right names in the wrong places then matches nothing, where field pairs score each of
    its fields right on its own.
    """
    if isinstance(value, dict):
        pairs: set[tuple[str, str]] = set()
        for key, item in value.items():
            pairs |= flatten_json(item, f"{prefix}.{key}" if prefix else str(key), records=records)
        return pairs
    if isinstance(value, list):
        if records:
            whole = {(f"{prefix}[]", json.dumps(normalize_json(item), sort_keys=True))
                     for item in value if isinstance(item, dict) and item}
            value = [item for item in value if not isinstance(item, dict)]
            return whole.union(*(flatten_json(item, f"{prefix}[]", records=True) for item in value))
        return set().union(*(flatten_json(item, f"{prefix}[]") for item in value))
    return {(prefix, _norm_scalar(value))}


def flatten_records(value: Any) -> set[tuple[str, str]]:
    """`flatten_json` with each object of a list one record, whole: the pairs of record P/R/F1."""
    return flatten_json(value, records=True)


def normalize_json(value: Any) -> Any:
    """A canonical form for equality: normalized scalars, lists compared as multisets (order-free)."""
    if isinstance(value, dict):
        return {str(k): normalize_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((normalize_json(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return _norm_scalar(value)


def json_equal(a: Any, b: Any) -> bool:
    """Whether two JSON values are the same answer once normalized (case, whitespace, list order)."""
    return normalize_json(a) == normalize_json(b)


def _micro(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Micro P/R/F1. With nothing expected and nothing predicted there is nothing to get wrong: 1.0."""
    if tp + fp + fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    return {"precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn)}


def _set_counts(pairs: Iterable[tuple[set[Any], set[Any]]]) -> tuple[int, int, int]:
    tp = fp = fn = 0
    for exp, pred in pairs:
        tp += len(exp & pred)
        fp += len(pred - exp)
        fn += len(exp - pred)
    return tp, fp, fn


def _top_field(path: str) -> str:
    """"entities[].name" → "entities"; a top-level list's paths all belong to "[]"."""
    head = re.split(r"\.|\[\]", path, maxsplit=1)[0]
    return head or ("[]" if path.startswith("[]") else "")


def _objects(value: Any, key: str) -> list[dict[str, Any]]:
    items = value.get(key) if isinstance(value, dict) else None
    return [o for o in items if isinstance(o, dict)] if isinstance(items, list) else []


def _entity_names(value: Any, key: str, name_field: str) -> set[str]:
    return {_norm_scalar(o[name_field]) for o in _objects(value, key) if o.get(name_field) is not None}


def _triples(value: Any, key: str, fields: tuple[str, str, str]) -> set[tuple[str, str, str]]:
    src, rel, tgt = fields
    return {
        (_norm_scalar(o[src]), norm_relation(o[rel]), _norm_scalar(o[tgt]))
        for o in _objects(value, key)
        if all(o.get(f) is not None for f in fields)
    }


def _prefixed(name: str, scores: dict[str, float]) -> dict[str, float]:
    return {f"{name}_{k}": v for k, v in scores.items()}


def extract_report(
    expected: list[Any],
    predicted: list[Any | None],
    valid_json: list[bool],
    schema_valid: list[bool],
    *,
    entities_key: str | None = None,
    entity_name_field: str = "name",
    relationships_key: str | None = None,
    relationship_fields: tuple[str, str, str] = ("source", "relation", "target"),
    unchecked: list[Any | None] | None = None,
) -> dict[str, Any]:
    """Scores of an extraction task: JSON and schema validity, exact match, field, record and entity/relation P/R/F1.

    Field scores are micro-averaged over the flattened (path, value) pairs of all items; a None prediction
    (no JSON) has no pairs, so everything expected of it is missed. Record scores are the same with each object
    of a list matched whole (`flatten_records`): the primary metric of extraction, as a downstream system uses a
    record only when all of it is right. `per_field` groups pairs by top-level key
    (expected or predicted); "macro_f1" is the mean of its F1s. Entities are compared by normalized name,
    relationships by (source, RELATION_UPPER_SNAKE, target), per item and summed.

    `unchecked`: the answers as the model wrote them, before the relation check (`honed.task.relations`) turned
    relationships round or dropped them; given, the report adds `relationship_unchecked_*` (the model's own
    relationship scores) and the totals `relationships_flipped` and `relationships_dropped`.
    """
    n = len(expected)
    if not (len(predicted) == len(valid_json) == len(schema_valid) == n):
        raise ValueError("expected, predicted, valid_json and schema_valid must have the same length")
    pairs = list(zip(expected, predicted, strict=True))
    flat = [(flatten_json(e), flatten_json(p) if p is not None else set()) for e, p in pairs]
    fields = sorted({_top_field(path) for e, p in flat for path, _ in e | p})
    per_field: dict[str, dict[str, float | int]] = {}
    for name in fields:
        tp, fp, fn = _set_counts(
            ({x for x in e if _top_field(x[0]) == name}, {x for x in p if _top_field(x[0]) == name})
            for e, p in flat
        )
        per_field[name] = {**_micro(tp, fp, fn), "support": tp + fn}
    exact = [p is not None and json_equal(e, p) for e, p in pairs]
    report: dict[str, Any] = {
        "valid_json_rate": float(np.mean(valid_json)) if n else None,
        "schema_valid_rate": float(np.mean(schema_valid)) if n else None,
        "exact_match": float(np.mean(exact)) if n else None,
        **_prefixed("field", _micro(*_set_counts(flat))),
        **_prefixed("record", _micro(*_set_counts(
            (flatten_records(e), flatten_records(p) if p is not None else set()) for e, p in pairs))),
        "per_field": per_field,
    }
    if entities_key:
        names = [(_entity_names(e, entities_key, entity_name_field), _entity_names(p, entities_key,
                                                                                  entity_name_field))
                 for e, p in pairs]
        report |= _prefixed("entity", _micro(*_set_counts(names)))
    if relationships_key:
        triples = [(_triples(e, relationships_key, relationship_fields),
                    _triples(p, relationships_key, relationship_fields)) for e, p in pairs]
        report |= _prefixed("relationship", _micro(*_set_counts(triples)))
        if unchecked is not None:
            raw = [(e, _triples(u, relationships_key, relationship_fields)) for (e, _), u in
                   zip(triples, unchecked, strict=True)]
            report |= _prefixed("relationship_unchecked", _micro(*_set_counts(raw)))
            flipped = sum(len(c - u) for (_, c), (_, u) in zip(triples, raw, strict=True))
            report["relationships_flipped"] = flipped
            report["relationships_dropped"] = sum(len(u - c) for (_, c), (_, u) in zip(triples, raw, strict=True)
                                                  ) - flipped
    if n == 0:  # no items: no score, rather than the 1.0 of "nothing expected, nothing predicted"
        report |= {k: None for k in report if k.endswith(("_precision", "_recall", "_f1"))}
    report["accuracy"] = report["exact_match"]
    report["macro_f1"] = float(np.mean([f["f1"] for f in per_field.values()])) if per_field else None
    return report


def generate_report(
    outputs: list[str], rules: list[tuple[str, str, bool]], keywords: list[list[str]]
) -> dict[str, Any]:
    """Format-rule pass rates and keyword hits of free-text outputs.

    `rules` are (name, regex, must_match): the regex is searched line-aware (re.MULTILINE) and must occur, or
    must not when must_match is False. An output passes the format when every rule passes. The keyword hit of
    an item is the share of its keywords found (case-insensitive); items without keywords are left out.
    """
    if len(outputs) != len(keywords):
        raise ValueError(f"{len(outputs)} outputs but {len(keywords)} keyword lists")
    compiled = [(name, re.compile(pattern, re.MULTILINE), must) for name, pattern, must in rules]
    passes = np.array([[(rx.search(out) is not None) == must for _, rx, must in compiled] for out in outputs],
                      dtype=bool).reshape(len(outputs), len(compiled))
    hits = [sum(k.lower() in out.lower() for k in kws) / len(kws)
            for out, kws in zip(outputs, keywords, strict=True) if kws]
    format_rate = float(passes.all(axis=1).mean()) if outputs else None
    return {
        "per_rule": {name: float(passes[:, j].mean()) if outputs else None
                     for j, (name, _, _) in enumerate(compiled)},
        "format_pass_rate": format_rate,
        "keyword_hit_rate": float(np.mean(hits)) if hits else None,
        "accuracy": format_rate,
        "macro_f1": None,
    }


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str)
    return value


def consistency(answers: list[list[Any]]) -> dict[str, float | int | None]:
    """Agreement across repeats: per item, the answers of its repeats.

    all_agree_rate: share of items whose repeats all agree. mean_agreement: mean share of an item's repeats
    that give its most common answer. Items with fewer than two repeats say nothing and are left out; with
    none left, both are None.
    """
    shares = []
    for repeats in answers:
        if len(repeats) < 2:
            continue
        top = Counter(_hashable(a) for a in repeats).most_common(1)[0][1]
        shares.append(top / len(repeats))
    if not shares:
        return {"all_agree_rate": None, "mean_agreement": None, "n_items": 0}
    return {"all_agree_rate": float(np.mean([s == 1.0 for s in shares])),
            "mean_agreement": float(np.mean(shares)), "n_items": len(shares)}

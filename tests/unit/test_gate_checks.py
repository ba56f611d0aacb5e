"""The gate's math and decisions against hand-computed cases and an independent bootstrap (numpy + sklearn)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from honed.evaluate.scoring import ItemRecord, metric_on
from honed.gating import checks
from honed.task.spec import load_task

pytestmark = pytest.mark.unit

R = 500  # resamples: enough to exercise the code, cheap enough for a unit test


def _acc(correct: list[int]) -> checks.Statistic:
    arr = np.asarray(correct, dtype=float)
    return lambda idx: float(arr[idx].mean())


def _reference_bootstrap(base: np.ndarray, tuned: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-resample (base, tuned) accuracies, drawn the way the paired bootstrap must draw them."""
    idx = np.random.default_rng(seed).integers(0, len(base), size=(R, len(base)))
    return base[idx].mean(axis=1), tuned[idx].mean(axis=1)


def test_paired_relative_improvement_matches_hand_computation() -> None:
    base = np.array([1, 1, 0, 0, 1, 0, 1, 0], dtype=float)  # 0.5
    tuned = np.array([1, 1, 1, 0, 1, 1, 1, 0], dtype=float)  # 0.75
    imp = checks.paired_improvement(_acc(base.tolist()), _acc(tuned.tolist()), 8, n_resamples=R)
    assert imp["base"] == 0.5 and imp["tuned"] == 0.75
    assert imp["difference"] == pytest.approx(0.25)
    assert imp["relative_improvement"] == pytest.approx(0.5)  # (0.75 - 0.5) / 0.5
    b, t = _reference_bootstrap(base, tuned)
    assert imp["difference_ci"] == pytest.approx(list(np.percentile(t - b, [2.5, 97.5])))
    ok = b > 0
    assert imp["relative_improvement_ci"] == pytest.approx(list(np.percentile((t[ok] - b[ok]) / b[ok],
                                                                              [2.5, 97.5])))
    assert imp["undefined_share"] == pytest.approx(float(np.mean(~ok)))
    # tuned is never worse on an item: no resample can show it behind
    assert imp["difference_ci"][0] >= 0


def test_identical_models_give_zero_difference_and_fail() -> None:
    same = [1, 0, 1, 1, 0, 1]
    imp = checks.paired_improvement(_acc(same), _acc(same), 6, n_resamples=R)
    assert imp["difference"] == 0 and imp["difference_ci"] == [0.0, 0.0]
    assert imp["relative_improvement"] == 0 and imp["relative_improvement_ci"] == [0.0, 0.0]
    assert imp["p_value"] == 1.0
    check = checks.improvement_check(imp, "accuracy", 0.10)
    assert not check["passed"]
    assert set(check["failed_because"]) == {"too small", "not significant"}
    assert "+0.0%" in check["detail"] and "lower end ≤ 0" in check["detail"]


def test_macro_f1_is_recomputed_on_every_resample(mini_task: Path) -> None:
    # macro-F1 is not a mean of per-item scores: the CI must come from recomputing it on each resample
    task = load_task(mini_task)
    expected = ["billing", "shipping", "NONE", "billing", "shipping", "NONE", "billing", "shipping", "NONE", "NONE"]
    base_pred = ["billing", "billing", "billing", "billing", "shipping", "billing", "NONE", "shipping", "NONE",
                 "billing"]
    tuned_pred = ["billing", "shipping", "NONE", "billing", "shipping", "billing", "billing", "shipping", "NONE",
                  "NONE"]

    def records(pred: list[str]) -> list[ItemRecord]:
        return [ItemRecord(id=str(i), repeat=0, expected=e, answer=p, correct=e == p,
                           cause=None if e == p else "wrong_answer", text=p, finish_reason="stop", latency_s=0.1,
                           ttft_s=0.01, prompt_tokens=10, completion_tokens=1, cached=False)
                for i, (e, p) in enumerate(zip(expected, pred))]

    kws: list[list[str]] = [[] for _ in expected]
    imp = checks.paired_improvement(metric_on(task, records(base_pred), kws, "macro_f1"),
                                    metric_on(task, records(tuned_pred), kws, "macro_f1"), 10, n_resamples=R)
    f1 = lambda y, p: f1_score(y, p, average="macro", zero_division=0)
    base_f1, tuned_f1 = f1(expected, base_pred), f1(expected, tuned_pred)
    assert imp["base"] == pytest.approx(base_f1) and imp["tuned"] == pytest.approx(tuned_f1)
    assert imp["relative_improvement"] == pytest.approx((tuned_f1 - base_f1) / base_f1)
    y, pb, pt = (np.array(a) for a in (expected, base_pred, tuned_pred))
    idx = np.random.default_rng(0).integers(0, 10, size=(R, 10))
    diffs = [f1(y[i], pt[i]) - f1(y[i], pb[i]) for i in idx]
    assert imp["difference_ci"] == pytest.approx(list(np.percentile(diffs, [2.5, 97.5])))
    per_item_mean_ci = np.percentile([(pt[i] == y[i]).mean() - (pb[i] == y[i]).mean() for i in idx], [2.5, 97.5])
    assert imp["difference_ci"] != pytest.approx(list(per_item_mean_ci))  # really not accuracy in disguise


def test_base_of_zero_uses_the_absolute_floor() -> None:
    base = [0] * 8
    tuned = [1, 1, 1, 1, 1, 0, 1, 0]
    imp = checks.paired_improvement(_acc(base), _acc(tuned), 8, n_resamples=R)
    assert imp["relative_improvement"] is None and imp["relative_improvement_ci"] is None
    check = checks.improvement_check(imp, "accuracy", 0.10)
    assert check["passed"] and check["threshold"] == pytest.approx(0.10)
    assert "undefined" in check["detail"] and "absolute floor" in check["detail"]
    weak = checks.improvement_check({**imp, "tuned": 0.05}, "accuracy", 0.10)
    assert not weak["passed"] and weak["failed_because"] == ["too small"]


@pytest.mark.parametrize(("base", "tuned", "ci", "passed", "because"), [
    (0.50, 0.55, [0.01, 0.09], True, []),                       # exactly +10%: the minimum passes
    (0.50, 0.54, [0.01, 0.09], False, ["too small"]),           # +8% although significant
    (0.40, 0.60, [0.0, 0.30], False, ["not significant"]),      # +50% but the CI touches 0
    (0.40, 0.60, [-0.05, 0.30], False, ["not significant"]),
    (0.60, 0.50, [-0.2, -0.01], False, ["too small", "not significant"]),
])
def test_improvement_rule(base: float, tuned: float, ci: list[float], passed: bool, because: list[str]) -> None:
    imp = {"base": base, "tuned": tuned, "relative_improvement": (tuned - base) / base, "difference_ci": ci}
    check = checks.improvement_check(imp, "macro_f1", 0.10)
    assert check["passed"] is passed and check["failed_because"] == because
    assert check["threshold"] == pytest.approx(base * 1.1)


def test_threshold() -> None:
    assert checks.threshold(0.6, 0.1) == pytest.approx(0.66)
    assert checks.threshold(0.0, 0.1) == pytest.approx(0.1)


@pytest.mark.parametrize(("base", "tuned", "passed", "shown"), [(2.0, 2.5, True, ("2.000", "2.500")),
                                                                 (2.0, 2.51, False, ("2.000", "2.510")),
                                                                 (2.0, 1.5, True, ("2.000", "1.500"))])
def test_forgetting(base: float, tuned: float, passed: bool, shown: tuple[str, str]) -> None:
    check = checks.forgetting_check(base, tuned, 0.25, 40)
    assert check["passed"] is passed
    assert check["relative_change"] == pytest.approx(tuned / base - 1)
    assert f"base {shown[0]}, tuned {shown[1]}" in check["detail"], check["detail"]


def test_collapse() -> None:
    nine_of_ten = ["NONE"] * 9 + ["billing"]
    failed = checks.collapse_check(nine_of_ten, 0.3, 0.9)
    assert not failed["passed"] and failed["top_answer"] == "NONE" and failed["top_share"] == 0.9
    assert "collapsed" in failed["detail"]
    assert checks.collapse_check(nine_of_ten, 0.6, 0.9)["passed"]  # the data itself is mostly one answer
    assert checks.collapse_check(["NONE"] * 8 + ["a", "b"], 0.3, 0.9)["passed"]
    assert checks.collapse_check([], 0.3, 0.9)["passed"]


def test_latency() -> None:
    assert checks.latency_check(350.0, None)["passed"]
    assert "no budget set" in checks.latency_check(350.0, None)["detail"]
    assert checks.latency_check(90.0, 100.0)["passed"]
    slow = checks.latency_check(120.0, 100.0)
    assert not slow["passed"] and "120 ms > budget 100 ms" in slow["detail"]
    assert not checks.latency_check(None, 100.0)["passed"]


@pytest.mark.parametrize(("ci", "passed", "words"), [
    ([-0.3, -0.05], False, "arm is significantly better"),
    ([-0.1, 0.2], True, "no significant difference"),
    ([0.05, 0.3], True, "tuned model is significantly better"),
])
def test_vs_arm(ci: list[float], passed: bool, words: str) -> None:
    cmp = {"base": 0.7, "tuned": 0.6, "difference": -0.1, "difference_ci": ci, "p_value": 0.04, "n_paired": 20}
    check = checks.vs_arm_check(cmp, "macro_f1", "arm qwen")
    assert check["passed"] is passed and words in check["detail"]


def test_verdict() -> None:
    ok = {"name": "x", "passed": True, "detail": ""}
    bad = {"name": "y", "passed": False, "detail": ""}
    assert checks.verdict([ok, ok]) == "PASS"
    assert checks.verdict([ok, bad]) == "FAIL"
    assert checks.verdict([]) == "FAIL"
    assert math.isinf(checks.forgetting_check(0.0, 1.0, 0.25, 1)["relative_change"])

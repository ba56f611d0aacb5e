"""Confidence intervals and paired tests (honed.evaluate.stats) against scipy and hand-computed values."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import binomtest

from honed.evaluate.stats import (
    bootstrap_ci,
    cluster_wilson_ci,
    effective_n,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    wilson_ci,
)

pytestmark = pytest.mark.unit


# --- wilson_ci ---

@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (8, 10, 0.4902, 0.9433),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_ci_hand_computed(k: int, n: int, lo: float, hi: float) -> None:
    assert wilson_ci(k, n) == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_ci_edges() -> None:
    assert wilson_ci(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_ci(8, 10, confidence=0.5), wilson_ci(8, 10, confidence=0.99)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        wilson_ci(11, 10)
    with pytest.raises(ValueError):
        wilson_ci(1, 10, confidence=1.0)


# --- bootstrap_ci ---

def _mean_of(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """The mean over resampled items: a statistic of item indices, like the scorers' metrics."""
    return lambda idx: float(values[idx].mean())


def test_bootstrap_ci_contains_the_estimate_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (20, 200, 2000):
        values = (rng.random(n) < 0.7).astype(float)
        lo, hi = bootstrap_ci(_mean_of(values), n, n_resamples=500)
        assert lo <= values.mean() <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_ci_is_reproducible_and_close_to_wilson() -> None:
    values = np.array([1.0] * 70 + [0.0] * 30)
    first = bootstrap_ci(_mean_of(values), 100, seed=3)
    assert first == bootstrap_ci(_mean_of(values), 100, seed=3)
    assert first == pytest.approx(wilson_ci(70, 100), abs=0.03)
    # A continuous statistic shows that the seed matters (a rate's percentiles land on the same grid).
    scores = np.random.default_rng(0).normal(size=100)
    assert bootstrap_ci(_mean_of(scores), 100, seed=3) != bootstrap_ci(_mean_of(scores), 100, seed=4)


def test_bootstrap_ci_ignores_resamples_where_the_statistic_is_undefined() -> None:
    values = np.array([1.0, 0.0, 0.0, 0.0])

    def mean_unless_item_0_drawn(idx: np.ndarray) -> float:
        return math.nan if (idx == 0).any() else float(values[idx].mean())

    # Only the resamples without item 0 count, and on those the mean is 0.
    assert bootstrap_ci(mean_unless_item_0_drawn, 4, n_resamples=200) == (0.0, 0.0)
    lo, hi = bootstrap_ci(lambda idx: math.nan, 4, n_resamples=10)
    assert math.isnan(lo) and math.isnan(hi)


def test_bootstrap_ci_needs_items() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci(lambda idx: 0.0, 0)


# --- mcnemar_exact ---

@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_matches_scipy_binomtest(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    a = rng.random(n) < 0.6
    b = rng.random(n) < rng.uniform(0.4, 0.9)
    result = mcnemar_exact(a.tolist(), b.tolist())
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert (result["a_only"], result["b_only"]) == (a_only, b_only)
    assert result["p_value"] == pytest.approx(binomtest(a_only, a_only + b_only, 0.5).pvalue, rel=1e-9)


def test_mcnemar_hand_cases() -> None:
    assert mcnemar_exact([True, False], [True, False]) == {"a_only": 0, "b_only": 0, "p_value": 1.0}
    # 0 vs 6 discordant: 2 * 0.5**6
    assert mcnemar_exact([False] * 6, [True] * 6)["p_value"] == pytest.approx(2 / 64)
    assert mcnemar_exact([True, False], [False, True])["p_value"] == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


# --- paired_bootstrap ---

def test_paired_bootstrap_detects_a_real_difference() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(300) < 0.5).astype(float)
    b = np.maximum(a, (rng.random(300) < 0.4).astype(float))  # B right wherever A is, and more
    result = paired_bootstrap(_mean_of(a), _mean_of(b), 300, n_resamples=500)
    assert result["diff"] == pytest.approx(b.mean() - a.mean())
    assert 0 < result["ci"][0] <= result["diff"] <= result["ci"][1]
    assert result["p_value"] == pytest.approx(2 / 501)  # no resample crosses 0: the +1 smoothing floor


def test_paired_bootstrap_sees_no_difference_between_equals() -> None:
    rng = np.random.default_rng(1)
    a = (rng.random(100) < 0.6).astype(float)
    result = paired_bootstrap(_mean_of(a), _mean_of(a), 100, n_resamples=200)
    assert result["diff"] == 0.0 and result["ci"] == [0.0, 0.0]
    assert result["p_value"] == 1.0


def test_paired_bootstrap_p_value_is_two_sided() -> None:
    rng = np.random.default_rng(2)
    a = (rng.random(80) < 0.6).astype(float)
    b = (rng.random(80) < 0.6).astype(float)
    ab = paired_bootstrap(_mean_of(a), _mean_of(b), 80, n_resamples=400, seed=5)
    ba = paired_bootstrap(_mean_of(b), _mean_of(a), 80, n_resamples=400, seed=5)
    assert ab["diff"] == -ba["diff"]
    assert ab["p_value"] == pytest.approx(ba["p_value"], abs=0.02)
    assert ab["p_value"] > 0.05  # two draws of the same rate: no significant difference either way


# --- holm ---

def test_holm_hand_computed() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 → raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_handles_edges() -> None:
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []
    assert holm([0.02]) == [0.02]


# --- repeats as clusters ---

def test_repeats_that_always_agree_are_worth_one_repeat() -> None:
    items = [1.0] * 8 + [0.0] * 2  # 10 items, each right in all 5 repeats or in none
    assert effective_n(items, 5) == 10.0
    assert cluster_wilson_ci(items, 5) == pytest.approx(wilson_ci(8, 10), abs=1e-12)
    assert cluster_wilson_ci(items, 5) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_ci(40, 50) == pytest.approx((0.6696, 0.8876), abs=1e-4)  # the trials count: too narrow
    assert cluster_wilson_ci([1.0] * 10, 3) == wilson_ci(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert cluster_wilson_ci(items, 1) == pytest.approx(wilson_ci(8, 10), abs=1e-12)


def test_repeats_that_vary_alike_in_every_item_count_as_trials() -> None:
    items = [0.5] * 10  # every item right in 2 of its 4 repeats: no between-item variance
    assert effective_n(items, 4) == 40.0
    assert cluster_wilson_ci(items, 4) == pytest.approx(wilson_ci(20, 40), abs=1e-12)


def test_effective_n_between_the_extremes_hand_computed() -> None:
    items = [1.0, 1.0, 1.0, 0.0, 0.5, 0.5]  # 2 repeats: p = 2/3, s² = 5/36, n_eff = (2/9)·6/(5/36) = 9.6
    assert effective_n(items, 2) == pytest.approx(9.6, abs=1e-12)
    assert cluster_wilson_ci(items, 2) == pytest.approx((0.36256, 0.87551), abs=1e-4)
    with pytest.raises(ValueError):
        effective_n(items, 0)
    assert cluster_wilson_ci([], 3) == (0.0, 1.0)


def test_score_rate_ci_with_agreeing_repeats_equals_one_repeat(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from honed.evaluate.scoring import ItemRecord, score
    from honed.task import load_task
    from tests.conftest import CLASSIFY_TOML, write_task

    task = load_task(write_task(tmp_path / "mini", CLASSIFY_TOML))
    truth = ["billing", "shipping", "NONE", "billing", "shipping", "NONE", "billing", "shipping", "NONE", "billing"]
    answers = ["billing", "shipping", "NONE", "billing", "shipping", "NONE", "billing", "billing", "billing", "NONE"]

    def records(repeats: int) -> list[ItemRecord]:
        return [ItemRecord(id=str(i), repeat=r, expected=t, answer=a, correct=t == a,
                           cause=None if t == a else "wrong_answer", text=a, finish_reason="stop", latency_s=0.1,
                           ttft_s=None, prompt_tokens=10, completion_tokens=1, cached=False)
                for r in range(repeats) for i, (t, a) in enumerate(zip(truth, answers, strict=True))]

    once = score(task, records(1), [[]] * 10, n_repeats=1, n_resamples=50)
    thrice = score(task, records(3), [[]] * 10, n_repeats=3, n_resamples=50)
    assert once["metrics"]["accuracy"] == thrice["metrics"]["accuracy"] == 0.7
    assert once["ci"]["accuracy"] == pytest.approx(list(wilson_ci(7, 10)), abs=1e-12)
    assert thrice["ci"]["accuracy"] == pytest.approx(once["ci"]["accuracy"], abs=1e-12)

"""Drift statistics against hand-computed cases (and scipy's own tests where a sum would be long)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from honed.monitor import drift
from honed.monitor.drift import DriftConfig
from honed.monitor.embed import centroid_distances

pytestmark = pytest.mark.unit
CFG = DriftConfig()


def test_output_length_flags_a_clear_shift_only() -> None:
    shifted = drift.output_length([1] * 50, [10] * 50, CFG, "eval")
    assert shifted.statistic["ks_d"] == 1.0 and shifted.statistic["p_value"] < 1e-10 and shifted.flagged
    same = drift.output_length(list(range(50)), list(range(50)), CFG, "eval")
    assert same.statistic["ks_d"] == 0.0 and same.statistic["p_value"] == 1.0 and not same.flagged


def test_output_length_needs_significance_as_well_as_size() -> None:
    # CDFs at x = 2: ref 2/4, log 0/4 → D = 0.5, but four items each cannot make that significant
    small = drift.output_length([1, 2, 3, 4], [3, 4, 5, 6], CFG, "eval")
    assert small.statistic["ks_d"] == pytest.approx(0.5)
    assert small.statistic["p_value"] > CFG.alpha and not small.flagged


def test_psi_by_hand() -> None:
    # (0.8 − 0.5)·ln(0.8/0.5) + (0.2 − 0.5)·ln(0.2/0.5)
    want = 0.3 * math.log(1.6) + (-0.3) * math.log(0.4)
    assert drift.psi({"a": 50, "b": 50}, {"a": 80, "b": 20}) == pytest.approx(want)
    assert drift.psi({"a": 5, "b": 5}, {"a": 50, "b": 50}) == 0.0


def test_label_mix_chi_square_by_hand() -> None:
    check = drift.label_mix({"a": 50, "b": 50}, {"a": 80, "b": 20}, CFG)
    # smoothed reference 50.5/101 = 0.5 each → expected 50, 50 → χ² = 2 · 30² / 50 = 36, 1 dof
    assert check.statistic["chi2"] == pytest.approx(36.0)
    assert check.statistic["dof"] == 1
    assert check.statistic["p_value"] == pytest.approx(sps.chi2.sf(36.0, 1))
    assert check.flagged and "a 50% → 80%" in check.detail
    assert not drift.label_mix({"a": 50, "b": 50}, {"a": 50, "b": 50}, CFG).flagged


def test_label_mix_handles_a_label_the_eval_set_lacks() -> None:
    check = drift.label_mix({"a": 10, "b": 10}, {"a": 5, "b": 5, "c": 30}, CFG)
    assert math.isfinite(check.statistic["chi2"]) and check.flagged
    assert check.statistic["reference"]["c"] == 0.0 and check.statistic["log"]["c"] == 0.75


def test_label_mix_skips_without_answers() -> None:
    check = drift.label_mix({"a": 3, "b": 1}, {}, CFG)
    assert check.skipped and not check.flagged


def test_centroid_distances_by_hand() -> None:
    eval_vecs = np.array([[1.0, 0.0], [0.0, 1.0]])
    ev, lg = centroid_distances(eval_vecs, np.array([[1.0, 0.0]]))
    # leave-one-out: each eval item against the other one, orthogonal → distance 1
    assert ev == pytest.approx([1.0, 1.0])
    # the full centroid is (1, 1)/√2 → 1 − 1/√2
    assert lg == pytest.approx([1 - 1 / math.sqrt(2)])


def test_centroid_shift_by_hand_and_its_permutation_p() -> None:
    a, b = np.array([[1.0, 0.0]] * 2), np.array([[0.0, 1.0]] * 2)
    dist, p = drift.centroid_shift(a, b, permutations=600)
    assert dist == pytest.approx(1.0)
    # 2 of the 6 ways to split four vectors into 2 + 2 are as far apart: p ≈ 1/3, not significant
    assert 0.25 < p < 0.42
    dist, p = drift.centroid_shift(np.array([[1.0, 0.0]] * 20), np.array([[0.0, 1.0]] * 20), permutations=500)
    assert dist == pytest.approx(1.0) and p == pytest.approx(1 / 501)


def _cone(n: int, rng: np.random.Generator, dim: int = 16, spread: float = 0.3) -> np.ndarray:
    v = np.zeros((n, dim))
    v[:, 0] = 1.0
    v += rng.normal(0, spread, (n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_input_distance_far_share_binomial_by_hand() -> None:
    rng = np.random.default_rng(0)
    eval_vecs = _cone(40, rng)
    c = eval_vecs.sum(0) / np.linalg.norm(eval_vecs.sum(0))
    ortho = np.zeros(16)
    ortho[5] = 1.0
    ortho -= (ortho @ c) * c
    ortho /= np.linalg.norm(ortho)
    log_vecs = np.array([c] * 70 + [ortho] * 30)  # 70 at distance 0, 30 at distance 1
    check = drift.input_distance(eval_vecs, log_vecs, CFG)
    st = check.statistic
    assert st["n_beyond"] == 30 and st["n_log"] == 100
    want = sum(math.comb(100, i) * 0.05**i * 0.95 ** (100 - i) for i in range(30, 101))
    assert st["share_p_value"] == pytest.approx(want, rel=1e-9)
    assert st["share_flagged"] and check.flagged


def test_input_distance_quiet_when_the_log_is_like_the_eval_set() -> None:
    rng = np.random.default_rng(1)
    check = drift.input_distance(_cone(40, rng), _cone(200, rng), CFG)
    assert not check.flagged
    assert check.statistic["centroid_p_value"] > CFG.alpha
    assert check.statistic["share_beyond"] < 2 * 0.05


def test_input_distance_sees_a_whole_population_move() -> None:
    rng = np.random.default_rng(2)
    eval_vecs = _cone(40, rng)
    moved = _cone(60, rng)[:, ::-1].copy()  # the same cone around another axis
    check = drift.input_distance(eval_vecs, moved, CFG)
    assert check.statistic["centroid_distance"] > 0.9 and check.statistic["centroid_flagged"] and check.flagged


def test_escalation_trend_fisher_by_hand() -> None:
    check = drift.escalation([(100, 10), (100, 10), (100, 40)], CFG)
    st = check.statistic
    # one-sided Fisher = hypergeometric tail: 300 requests, 60 escalated, 100 in the last window, ≥ 40 of them
    want = sum(math.comb(60, x) * math.comb(240, 100 - x) for x in range(40, 61)) / math.comb(300, 100)
    assert st["p_value"] == pytest.approx(want, rel=1e-9)
    assert st["last_rate"] == 0.4 and st["earlier_rate"] == 0.1 and st["increase"] == pytest.approx(0.3)
    assert st["rising"] and check.flagged
    assert st["windows"][2]["rate"] == 0.4


def test_escalation_budget_uses_the_wilson_lower_bound() -> None:
    over = drift.escalation([(100, 50)], CFG)
    assert over.statistic["rate_ci"][0] > CFG.max_escalation_rate and over.statistic["over_budget"] and over.flagged
    # 36% is above the 35% budget, but its interval is not: no flag on one window of 100
    near = drift.escalation([(100, 36)], CFG)
    assert near.statistic["rate_ci"][0] < CFG.max_escalation_rate and not near.flagged
    steady = drift.escalation([(100, 10), (100, 12)], CFG)
    assert not steady.flagged and steady.statistic["p_value"] > CFG.alpha


def test_drift_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="alpah"):
        DriftConfig(alpah=0.05)  # type: ignore[call-arg]

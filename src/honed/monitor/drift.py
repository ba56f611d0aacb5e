"""Drift statistics, as pure functions: each check returns its statistic, its threshold and its flag.

A flag needs two things at once: the shift is statistically real (a p-value below `alpha`) and large enough
to matter (an effect size above a floor). The p-value alone would flag every harmless wobble of a busy
endpoint (thousands of requests make any difference significant); the effect size alone would flag noise
on a quiet one.

    output length   two-sample Kolmogorov–Smirnov test (D, p) of output lengths in characters
    label mix       chi-square goodness of fit against the reference label distribution, with PSI as effect
    input distance  cosine distance between the log's and the eval set's embedding centroids (permutation
                    test), and the share of inputs farther from the eval centroid than the eval set's own
                    95th percentile (one-sided binomial test against the 5% expected without drift)
    escalation      Fisher's exact test, last window vs the windows before it; and the overall rate's Wilson
                    interval against a budget
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats as sps

from honed.evaluate.stats import wilson_ci


class DriftConfig(BaseModel):
    """Thresholds of the drift checks (every one is written into the report next to its statistic)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    alpha: float = 0.01
    """Significance level of every drift test."""
    min_ks_d: float = 0.2
    """Output length: smallest Kolmogorov–Smirnov D (largest gap between the two CDFs) that is flagged."""
    min_psi: float = 0.25
    """Label mix: smallest population stability index that is flagged (0.25 = the usual 'major shift')."""
    distance_quantile: float = 0.95
    """Input distance: the eval set's own quantile of distance to its centroid that marks 'far'."""
    min_share_factor: float = 2.0
    """Input distance: flagged only when the far share is at least this many times the expected 1 − quantile."""
    min_centroid_distance: float = 0.25
    """Input distance: smallest cosine distance between the log's and the eval set's centroids that is flagged
    (measured on the support-triage example: 0.08–0.10 for held-out items of the same task, 0.44–0.78 for
    restaurant bookings, bank queries and general instructions)."""
    permutations: int = 2000
    """Input distance: random relabellings in the centroid-shift permutation test."""
    min_escalation_increase: float = 0.05
    """Escalation: smallest rise of the last window's rate over the earlier windows' that is flagged."""
    max_escalation_rate: float = 0.35
    """Escalation: budget on the overall rate (seed 004: the hybrid's sweet spot is 65–75% local); flagged when
    the rate's 95% Wilson interval lies entirely above it."""


@dataclass
class Check:
    """One drift check: what was measured, against what, and whether it is flagged."""

    name: str
    method: str
    statistic: dict[str, Any] = field(default_factory=dict)
    threshold: dict[str, Any] = field(default_factory=dict)
    flagged: bool = False
    detail: str = ""
    skipped: str | None = None
    """Why the check did not run (then `flagged` is False)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def skipped(name: str, method: str, reason: str) -> Check:
    return Check(name=name, method=method, detail=f"skipped: {reason}", skipped=reason)


def output_length(ref: Sequence[float], cur: Sequence[float], cfg: DriftConfig, reference: str) -> Check:
    """Two-sample KS test of output lengths, log (`cur`) against `reference`."""
    method = f"two-sample Kolmogorov–Smirnov test on output length in characters, log vs {reference}"
    if len(ref) == 0 or len(cur) == 0:
        return skipped("output_length", method, "no outputs on one side")
    res = sps.ks_2samp(np.asarray(ref, float), np.asarray(cur, float))
    d, p = float(res.statistic), float(res.pvalue)
    flagged = p < cfg.alpha and d >= cfg.min_ks_d
    stat = {"ks_d": d, "p_value": p, "n_ref": len(ref), "n_log": len(cur),
            "mean_ref": float(np.mean(ref)), "mean_log": float(np.mean(cur)),
            "median_ref": float(np.median(ref)), "median_log": float(np.median(cur))}
    detail = (f"D = {d:.3f} (p = {p:.3g}); mean length {stat['mean_log']:.1f} chars in the log vs "
              f"{stat['mean_ref']:.1f} in the {reference}")
    return Check("output_length", method, stat, {"alpha": cfg.alpha, "min_ks_d": cfg.min_ks_d}, flagged, detail)


def psi(ref_counts: Mapping[str, int], cur_counts: Mapping[str, int], eps: float = 1e-4) -> float:
    """Population stability index: Σ (p_cur − p_ref) · ln(p_cur / p_ref), proportions floored at `eps`
    (a category absent on one side would otherwise make it infinite)."""
    cats = sorted(set(ref_counts) | set(cur_counts))
    n_ref, n_cur = sum(ref_counts.values()), sum(cur_counts.values())
    if n_ref == 0 or n_cur == 0:
        raise ValueError("PSI needs counts on both sides")
    total = 0.0
    for c in cats:
        p = max(ref_counts.get(c, 0) / n_ref, eps)
        q = max(cur_counts.get(c, 0) / n_cur, eps)
        total += (q - p) * math.log(q / p)
    return total


def label_mix(ref_counts: Mapping[str, int], cur_counts: Mapping[str, int], cfg: DriftConfig) -> Check:
    """Chi-square goodness of fit of the log's label counts to the reference proportions.

    The reference counts get +0.5 per category (a label the eval set lacks still has a small expected share,
    so the test stays defined); the flag also needs PSI ≥ `min_psi`.
    """
    method = ("chi-square goodness of fit of the log's answer mix to the eval set's expected-label mix "
              "(reference +0.5 per category), PSI as effect size")
    cats = sorted(set(ref_counts) | set(cur_counts))
    n_cur = sum(cur_counts.get(c, 0) for c in cats)
    if n_cur == 0 or sum(ref_counts.values()) == 0 or len(cats) < 2:
        return skipped("label_mix", method, "fewer than two labels or no answers on one side")
    smoothed = np.array([ref_counts.get(c, 0) + 0.5 for c in cats], float)
    expected = smoothed / smoothed.sum() * n_cur
    observed = np.array([cur_counts.get(c, 0) for c in cats], float)
    chi2, p = sps.chisquare(observed, expected)
    value = psi(ref_counts, cur_counts)
    flagged = float(p) < cfg.alpha and value >= cfg.min_psi
    n_ref = sum(ref_counts.values())
    stat = {"chi2": float(chi2), "dof": len(cats) - 1, "p_value": float(p), "psi": value,
            "reference": {c: ref_counts.get(c, 0) / n_ref for c in cats},
            "log": {c: cur_counts.get(c, 0) / n_cur for c in cats}, "n_log": n_cur}
    moved = max(cats, key=lambda c: abs(stat["log"][c] - stat["reference"][c]))
    detail = (f"chi² = {float(chi2):.1f} (p = {float(p):.3g}), PSI = {value:.3f}; largest move: {moved} "
              f"{stat['reference'][moved]:.0%} → {stat['log'][moved]:.0%}")
    return Check("label_mix", method, stat, {"alpha": cfg.alpha, "min_psi": cfg.min_psi}, flagged, detail)


def _centroid_cosine(a: np.ndarray, b: np.ndarray) -> float:
    ca, cb = a.mean(0), b.mean(0)
    denom = float(np.linalg.norm(ca) * np.linalg.norm(cb))
    return 1.0 - float(ca @ cb) / denom if denom > 0 else 1.0


def centroid_shift(eval_vecs: np.ndarray, log_vecs: np.ndarray, permutations: int = 2000, seed: int = 0
                   ) -> tuple[float, float]:
    """(cosine distance between the eval centroid and the log's centroid, permutation p-value).

    The p-value is the share of random relabellings of the pooled inputs whose two centroids lie at least as
    far apart (+1 smoothed): it accounts for how noisy a centroid of this many inputs is.
    """
    observed = _centroid_cosine(eval_vecs, log_vecs)
    pooled = np.concatenate([eval_vecs, log_vecs])
    m, rng = len(eval_vecs), np.random.default_rng(seed)
    total = pooled.sum(0)
    hits = 0
    for _ in range(permutations):
        idx = rng.permutation(len(pooled))[:m]
        a = pooled[idx].sum(0)
        b = total - a
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        if (1.0 - float(a @ b) / denom if denom > 0 else 1.0) >= observed - 1e-12:
            hits += 1
    return observed, (hits + 1) / (permutations + 1)


def input_distance(eval_vecs: np.ndarray, log_vecs: np.ndarray, cfg: DriftConfig) -> Check:
    """Did the logged inputs move away from the eval set? Two views of the distance to the eval centroid:

    - centroid shift: the cosine distance between the eval centroid and the log's centroid, with a
      permutation test; flagged at p < alpha and distance ≥ `min_centroid_distance`. This sees a whole
      population that moved, even when each input stays within the eval set's (often wide) spread;
    - far share: the share of logged inputs farther from the eval centroid than the eval set's own
      `distance_quantile` (eval items measured leave-one-out), one-sided binomial test against 1 − quantile;
      flagged at p < alpha and share ≥ `min_share_factor` × (1 − quantile). This sees a minority of outliers.
    """
    from honed.monitor.embed import centroid_distances

    q = cfg.distance_quantile
    method = (f"sentence embeddings; (1) cosine distance between the log's centroid and the eval set's, "
              f"permutation test; (2) share of log inputs beyond the eval set's own {q:.0%} distance to its "
              f"centroid (eval items leave-one-out), one-sided binomial test against {1 - q:.0%}")
    if len(eval_vecs) < 2 or len(log_vecs) == 0:
        return skipped("input_distance", method, "needs at least 2 eval inputs and 1 logged input")
    ev, lg = centroid_distances(eval_vecs, log_vecs)
    cut = float(np.quantile(ev, q))
    k, n = int(np.sum(lg > cut)), len(lg)
    p_far = float(sps.binom.sf(k - 1, n, 1 - q))  # P(X ≥ k) without drift
    share = k / n
    far = p_far < cfg.alpha and share >= cfg.min_share_factor * (1 - q)
    shift, p_shift = centroid_shift(eval_vecs, log_vecs, cfg.permutations)
    moved = p_shift < cfg.alpha and shift >= cfg.min_centroid_distance
    stat = {"centroid_distance": shift, "centroid_p_value": p_shift, "centroid_flagged": moved,
            "cutoff": cut, "n_beyond": k, "n_log": n, "n_eval": len(ev), "share_beyond": share,
            "expected_share": 1 - q, "share_ci": list(wilson_ci(k, n)), "share_p_value": p_far,
            "share_flagged": far, "mean_eval": float(ev.mean()), "mean_log": float(lg.mean()),
            "eval_distances": [round(float(x), 5) for x in ev], "log_distances": [round(float(x), 5) for x in lg]}
    detail = (f"log centroid at cosine distance {shift:.3f} from the eval centroid (permutation p = "
              f"{p_shift:.3g}); {k}/{n} log inputs ({share:.0%}) beyond the eval set's {q:.0%} distance "
              f"{cut:.3f} (expected {1 - q:.0%}; binomial p = {p_far:.3g})")
    threshold = {"alpha": cfg.alpha, "min_centroid_distance": cfg.min_centroid_distance, "quantile": q,
                 "min_share": cfg.min_share_factor * (1 - q)}
    return Check("input_distance", method, stat, threshold, moved or far, detail)


def escalation(windows: Sequence[tuple[int, int]], cfg: DriftConfig) -> Check:
    """`windows` = (requests, escalated) per time window, oldest first."""
    method = ("escalation rate per time window; Fisher's exact test (one-sided) of the last window against "
              "the earlier ones, and the overall rate's 95% Wilson interval against a budget")
    n = sum(w[0] for w in windows)
    e = sum(w[1] for w in windows)
    if n == 0:
        return skipped("escalation", method, "no requests")
    rate = e / n
    lo, hi = wilson_ci(e, n)
    over_budget = lo > cfg.max_escalation_rate
    stat: dict[str, Any] = {"rate": rate, "rate_ci": [lo, hi], "n": n, "escalated": e,
                            "windows": [{"n": a, "escalated": b, "rate": b / a if a else None,
                                         "ci": list(wilson_ci(b, a))} for a, b in windows]}
    rising = False
    if len(windows) >= 2 and windows[-1][0] > 0 and sum(w[0] for w in windows[:-1]) > 0:
        n_last, e_last = windows[-1]
        n_before, e_before = sum(w[0] for w in windows[:-1]), sum(w[1] for w in windows[:-1])
        _, p = sps.fisher_exact([[e_last, n_last - e_last], [e_before, n_before - e_before]], alternative="greater")
        increase = e_last / n_last - e_before / n_before
        rising = float(p) < cfg.alpha and increase >= cfg.min_escalation_increase
        stat.update(last_rate=e_last / n_last, earlier_rate=e_before / n_before, increase=increase,
                    p_value=float(p))
        trend = f"last window {e_last / n_last:.0%} vs {e_before / n_before:.0%} before (p = {float(p):.3g})"
    else:
        trend = "one window only: no trend test"
    detail = f"{e}/{n} escalated ({rate:.0%}, 95% CI {lo:.0%}–{hi:.0%}); {trend}"
    threshold = {"alpha": cfg.alpha, "min_increase": cfg.min_escalation_increase,
                 "max_rate": cfg.max_escalation_rate}
    stat.update(rising=rising, over_budget=over_budget)
    return Check("escalation", method, stat, threshold, rising or over_budget, detail)

"""Confidence intervals and paired tests, as pure functions.

Statistics that are not simple rates (macro-F1, field F1) are given as functions of an array of item indices,
so one definition serves the point estimate (all indices), the bootstrap (resampled indices) and the paired
comparison of two runs (the same resampled indices for both).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

Statistic = Callable[[np.ndarray], float]


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _wilson(p: float, n: float, z: float) -> tuple[float, float]:
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0/n and n/n the bound is exactly 0 or 1; rounding would leave 1e-17 there.
    lo = 0.0 if p == 0 else max(0.0, center - half)
    hi = 1.0 if p == 1 else min(1.0, center + half)
    return (lo, hi)


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0.0, 1.0) when there are no trials.

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0/n and n/n, which small eval
    sets hit often.
    """
    if n == 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    return _wilson(successes / n, n, _z(confidence))


def effective_n(item_means: Sequence[float], repeats: int) -> float:
    """How many independent trials `repeats` correlated repeats of each item are worth (Kish's n / design effect).

    A rate over items × repeats has the cluster-robust variance s²/n, s² the variance of the per-item means
    (no n − 1: repeats that all agree then give exactly n trials, the same as one repeat). The trials that
    variance is worth, p(1 − p)·n/s², lie between n (repeats that always agree: they add nothing) and
    n·repeats (repeats as independent as new items). At a rate of 0 or 1 nothing tells the two apart: n.
    """
    n = len(item_means)
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if n == 0 or repeats == 1:
        return float(n)
    y = np.asarray(item_means, dtype=float)
    p = float(y.mean())
    if p <= 0 or p >= 1:
        return float(n)
    s2 = float(np.mean((y - p) ** 2))
    if s2 == 0:  # every item right in the same share of its repeats: no sign of clustering
        return float(n * repeats)
    return min(float(n * repeats), max(float(n), p * (1 - p) * n / s2))


def cluster_wilson_ci(item_means: Sequence[float], repeats: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of a rate measured `repeats` times per item, repeats treated as clusters, not trials.

    `item_means` holds each item's mean over its repeats (its share of right answers). Counting items × repeats
    as independent trials would narrow the interval by up to √repeats although a model that answers the same
    every time learns nothing new from the repeat; the Wilson interval on `effective_n` trials does not.
    With one repeat it is `wilson_ci` on the items.
    """
    n_eff = effective_n(item_means, repeats)
    if n_eff == 0:
        return (0.0, 1.0)
    p = float(np.mean(np.asarray(item_means, dtype=float)))
    if not 0 <= p <= 1:
        raise ValueError(f"item means must lie within 0..1, got a mean of {p}")
    return _wilson(p, n_eff, _z(confidence))


def _resample(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    if n_items < 1:
        raise ValueError("the bootstrap needs at least one item")
    # All resamples drawn at once: the same seed gives the same indices to every metric and to both arms.
    return np.random.default_rng(seed).integers(0, n_items, size=(n_resamples, n_items))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    _z(confidence)  # validates
    values = values[~np.isnan(values)]  # a resample on which the statistic is undefined says nothing
    if values.size == 0:
        return (math.nan, math.nan)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return (float(lo), float(hi))


def bootstrap_ci(
    statistic: Statistic, n_items: int, *, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic`, a function of an array of resampled item indices."""
    samples = _resample(n_items, n_resamples, seed)
    values = np.fromiter((statistic(idx) for idx in samples), dtype=float, count=n_resamples)
    return _percentiles(values, confidence)


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test: two-sided binomial test (p = 1/2) on the items exactly one of A and B got right.

    Returns a_only (right only in A), b_only (right only in B) and p_value (1.0 when no item is discordant).
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"the runs have {len(correct_a)} and {len(correct_b)} items: they must be paired")
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    if n == 0:
        return {"a_only": 0, "b_only": 0, "p_value": 1.0}
    # Integer arithmetic keeps the tail exact; Python's int division rounds the ratio correctly.
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1))
    return {"a_only": a_only, "b_only": b_only, "p_value": min(1.0, 2 * tail / 2**n)}


def paired_bootstrap(
    stat_a: Statistic,
    stat_b: Statistic,
    n_items: int,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Paired bootstrap of B − A: both statistics see the same resampled items.

    Returns diff (on all items), ci (percentile interval of the resampled differences) and a two-sided
    p_value: twice the share of resampled differences on the other side of 0 from the observed one (0
    included), smoothed with +1 so it is never 0, capped at 1.
    """
    everything = np.arange(n_items)
    diff = float(stat_b(everything) - stat_a(everything))
    samples = _resample(n_items, n_resamples, seed)
    diffs = np.fromiter((stat_b(idx) - stat_a(idx) for idx in samples), dtype=float, count=n_resamples)
    lo, hi = _percentiles(diffs, confidence)
    diffs = diffs[~np.isnan(diffs)]
    other_side = int(np.sum(diffs <= 0)) if diff >= 0 else int(np.sum(diffs >= 0))
    p_value = min(1.0, 2 * (other_side + 1) / (diffs.size + 1))
    return {"diff": diff, "ci": [lo, hi], "p_value": p_value}


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order: monotone in the sorted order, capped at 1."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m, dtype=float)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()

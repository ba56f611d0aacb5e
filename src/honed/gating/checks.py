"""The gate's decisions, as pure functions: the paired improvement statistic and one function per check.

Each check returns a dict `{"name", "passed", "detail", ...numbers}`: `detail` is the sentence a person reads
(what was measured, against what limit, why it passed or failed); the numbers beside it are for machines.
No I/O here: `honed.gating.run` gathers the measurements and calls these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from honed.evaluate import stats

Statistic = Callable[[np.ndarray], float]
INVALID = "<invalid>"  # the label of outputs that were no answer at all, in the collapse count
_EPS = 1e-12  # a relative improvement of exactly the minimum passes, whatever the float rounding says


def _memo(stat: Statistic) -> Statistic:
    """The statistic, computed once per resample: the difference and the ratio bootstraps share resamples."""
    seen: dict[bytes, float] = {}

    def cached(idx: np.ndarray) -> float:
        key = idx.tobytes()
        if key not in seen:
            seen[key] = stat(idx)
        return seen[key]

    return cached


def paired_improvement(stat_base: Statistic, stat_tuned: Statistic, n_items: int, *, n_resamples: int = 2000,
                       seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """Tuned vs base on the same items: the difference and the relative improvement, each with a paired CI.

    Every resample draws item indices once and recomputes the metric on them for both models (macro-F1 is not
    a mean of per-item scores, so it cannot be averaged per item). `relative_improvement` is
    (tuned − base) / base; it is None when the base scores 0, and resamples whose base scores 0 are left out of
    its CI (their share is `undefined_share`).
    """
    base, tuned = _memo(stat_base), _memo(stat_tuned)
    boot = stats.paired_bootstrap(base, tuned, n_items, n_resamples=n_resamples, seed=seed, confidence=confidence)
    everything = np.arange(n_items)
    b, t = base(everything), tuned(everything)
    out: dict[str, Any] = {"base": b, "tuned": t, "difference": boot["diff"], "difference_ci": boot["ci"],
                           "p_value": boot["p_value"], "relative_improvement": None,
                           "relative_improvement_ci": None, "undefined_share": None}
    if b > 0:
        undefined = 0

        def ratio(idx: np.ndarray) -> float:
            nonlocal undefined
            bb = base(idx)
            if bb <= 0:
                undefined += 1
                return math.nan
            return (tuned(idx) - bb) / bb

        # Same seed, same resamples as the difference above (stats draws all indices from the seed).
        lo, hi = stats.bootstrap_ci(ratio, n_items, n_resamples=n_resamples, seed=seed, confidence=confidence)
        out.update(relative_improvement=(t - b) / b, relative_improvement_ci=[lo, hi],
                   undefined_share=undefined / n_resamples)
    return out


def threshold(base_value: float, min_relative_improvement: float) -> float:
    """The lowest tuned value the size rule accepts: base × (1 + min); the absolute floor min when base is 0."""
    if base_value > 0:
        return base_value * (1 + min_relative_improvement)
    return base_value + min_relative_improvement


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def improvement_check(imp: dict[str, Any], metric: str, min_relative_improvement: float,
                      confidence: float = 0.95) -> dict[str, Any]:
    """PASS needs the relative improvement ≥ the minimum AND the paired CI of the difference above 0.

    With a base of 0 the relative improvement is undefined: the size rule becomes an absolute floor (the tuned
    value must be ≥ `min_relative_improvement` in the metric's own units), the CI rule stays.
    """
    b, t, rel = imp["base"], imp["tuned"], imp["relative_improvement"]
    lo, hi = imp["difference_ci"]
    ci_text = f"paired {confidence:.0%} CI of the difference [{lo:+.3f}, {hi:+.3f}]"
    reasons: list[str] = []
    if rel is not None:
        size_ok = rel >= min_relative_improvement - _EPS
        size = (f"{metric} {b:.3f} → {t:.3f}: relative improvement {_pct(rel)} "
                f"{'≥' if size_ok else '<'} the required {_pct(min_relative_improvement)}")
    else:
        floor = threshold(b, min_relative_improvement)
        size_ok = t >= floor - _EPS
        size = (f"{metric} {b:.3f} → {t:.3f}: the base scores {b:.3f}, so a relative improvement is undefined; "
                f"judged on an absolute floor instead: tuned {'≥' if size_ok else '<'} {floor:.3f} "
                f"(base + {min_relative_improvement:g})")
    ci_ok = not math.isnan(lo) and lo > 0
    ci = f"{ci_text} {'lies above 0' if ci_ok else 'does not lie above 0 (lower end ≤ 0): not a proven gain'}"
    if not size_ok:
        reasons.append("too small")
    if not ci_ok:
        reasons.append("not significant")
    return {"name": "improvement", "passed": size_ok and ci_ok, "detail": f"{size}; {ci}",
            "base": b, "tuned": t, "relative_improvement": rel, "difference_ci": [lo, hi],
            "threshold": threshold(b, min_relative_improvement), "failed_because": reasons}


def min_value_check(tuned: float, tuned_ci: list[float] | None, metric: str, min_value: float | None
                    ) -> dict[str, Any]:
    """The absolute bar the task states (`acceptance.min_value`): the tuned score must reach it. A task that
    states none passes this check, and the detail says plainly that only the relative gain was judged."""
    if min_value is None:
        return {"name": "min_value", "passed": True, "min_value": None, "tuned": tuned,
                "detail": f"the task states no absolute bar ([acceptance] min_value): only the relative gain over "
                          f"the base was judged, so a PASS does not say the model is good enough for use "
                          f"(tuned {metric} {tuned:.3f})"}
    return _bar("min_value", tuned, tuned_ci, metric, min_value)


def min_metric_check(tuned: float, tuned_ci: list[float] | None, metric: str, bar: float) -> dict[str, Any]:
    """One of the task's bars for a metric beside the primary one (`acceptance.min_metrics`)."""
    return {**_bar("min_metric", tuned, tuned_ci, metric, bar), "metric": metric}


def _bar(name: str, tuned: float, tuned_ci: list[float] | None, metric: str, bar: float) -> dict[str, Any]:
    passed = tuned >= bar - _EPS
    ci = f" (95% CI [{tuned_ci[0]:.3f}, {tuned_ci[1]:.3f}])" if tuned_ci else ""
    return {"name": name, "passed": passed, "min_value": bar, "tuned": tuned,
            "detail": f"tuned {metric} {tuned:.3f}{ci} {'≥' if passed else '<'} the task's bar {bar:.3f}"
                      + ("" if passed else ": better than the base, but not good enough to ship")}


def forgetting_check(base_nll: float, tuned_nll: float, max_forgetting: float, n_prompts: int) -> dict[str, Any]:
    """FAIL when the tuned model's mean per-token loss on general prompts rises by more than `max_forgetting`."""
    rise = tuned_nll / base_nll - 1 if base_nll > 0 else math.inf if tuned_nll > 0 else 0.0
    passed = rise <= max_forgetting + _EPS
    detail = (f"mean per-token NLL of the reference answers to {n_prompts} general prompts: base {base_nll:.3f}, "
              f"tuned {tuned_nll:.3f} ({_pct(rise)}; limit {_pct(max_forgetting)})"
              + ("" if passed else ": the fine-tune forgot general language skills"))
    return {"name": "forgetting", "passed": passed, "detail": detail, "base_nll": base_nll,
            "tuned_nll": tuned_nll, "relative_change": rise, "max_forgetting": max_forgetting}


def collapse_check(answers: list[str], expected_top_share: float, collapse_share: float) -> dict[str, Any]:
    """FAIL when ≥ `collapse_share` of the tuned answers are one answer while the data's top answer is < 50%.

    The rule of tune's collapse alarm (seed 000's "NONE to everything"), applied to the test answers.
    """
    if not answers:
        return {"name": "collapse", "passed": True, "detail": "no answers to check", "top_answer": None,
                "top_share": 0.0, "expected_top_share": expected_top_share, "collapse_share": collapse_share}
    values, counts = np.unique(np.asarray(answers, dtype=object).astype(str), return_counts=True)
    top = str(values[int(np.argmax(counts))])
    share = float(counts.max()) / len(answers)
    collapsed = share >= collapse_share - _EPS and expected_top_share < 0.5
    detail = (f"{share:.0%} of the tuned answers are {top!r} (the most common expected answer is "
              f"{expected_top_share:.0%} of the test; collapse at ≥ {collapse_share:.0%} while the data's top "
              f"answer is < 50%)" + (f"; {INVALID!r} stands for every output that was no valid answer"
                                     if top == INVALID else "")
              + (": the model collapsed onto one answer" if collapsed else ""))
    return {"name": "collapse", "passed": not collapsed, "detail": detail, "top_answer": top, "top_share": share,
            "expected_top_share": expected_top_share, "collapse_share": collapse_share}


def latency_check(p95_ms: float | None, budget_ms: float | None) -> dict[str, Any]:
    """Tuned P95 latency against `acceptance.max_p95_latency_ms`; passes with "no budget set" when there is none."""
    if budget_ms is None:
        shown = "unknown" if p95_ms is None else f"{p95_ms:.0f} ms"
        return {"name": "latency", "passed": True, "detail": f"no budget set (tuned P95 {shown})",
                "p95_ms": p95_ms, "budget_ms": None}
    if p95_ms is None:
        return {"name": "latency", "passed": False, "detail": f"no latency measured against a {budget_ms:.0f} ms "
                "budget", "p95_ms": None, "budget_ms": budget_ms}
    passed = p95_ms <= budget_ms
    return {"name": "latency", "passed": passed,
            "detail": f"tuned P95 {p95_ms:.0f} ms {'≤' if passed else '>'} budget {budget_ms:.0f} ms",
            "p95_ms": p95_ms, "budget_ms": budget_ms}


def vs_arm_check(cmp: dict[str, Any], metric: str, arm: str, confidence: float = 0.95) -> dict[str, Any]:
    """Tuned − arm, paired. Reported always; a FAIL only when the arm is significantly better (CI below 0)."""
    lo, hi = cmp["difference_ci"]
    worse = not math.isnan(hi) and hi < 0
    verdict = ("the arm is significantly better" if worse else
               "the tuned model is significantly better" if lo > 0 else "no significant difference")
    detail = (f"{metric} tuned {cmp['tuned']:.3f} vs {arm} {cmp['base']:.3f} on {cmp['n_paired']} paired items: "
              f"difference {cmp['difference']:+.3f}, {confidence:.0%} CI [{lo:+.3f}, {hi:+.3f}]: {verdict}")
    return {"name": "vs_arm", "passed": not worse, "detail": detail, "difference": cmp["difference"],
            "difference_ci": [lo, hi], "p_value": cmp["p_value"]}


def verdict(checks: list[dict[str, Any]]) -> str:
    """PASS only when every check passed."""
    return "PASS" if checks and all(c["passed"] for c in checks) else "FAIL"

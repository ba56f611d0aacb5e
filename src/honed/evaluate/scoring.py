"""From per-item records to the numbers: the kind's metrics, their 95% CIs, failures by cause.

The same per-item view (`ItemView`) feeds the point estimates, the bootstrap CIs and the paired comparison,
so a metric is defined once and resampled, never re-derived.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from honed.evaluate import scorers, stats
from honed.evaluate.output import FAILURE_CAUSES, parse_output
from honed.task.data import Item
from honed.task.spec import Task
from honed.types import Response

RATE_METRICS = ("accuracy", "valid_json_rate", "schema_valid_rate", "exact_match", "format_pass_rate",
                "keyword_hit_rate")
F1_METRICS = ("macro_f1", "field_f1", "record_f1", "entity_f1", "relationship_f1", "relationship_unchecked_f1")


@dataclass
class ItemRecord:
    """One (item, repeat): what was asked, what came back, how it was judged."""

    id: str
    repeat: int
    expected: Any
    answer: Any
    correct: bool
    cause: str | None  # None when correct; else one of FAILURE_CAUSES
    text: str
    finish_reason: str
    latency_s: float
    ttft_s: float | None
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    valid_json: bool = True
    schema_valid: bool = True
    constrained: bool = False
    """Decoded under the task's answer-space constraint (a grammar or logits processor), not free."""
    unchecked_answer: Any = None
    """Extraction: the answer as the model wrote it, where the relation check changed it (`answer` is checked)."""


def item_keywords(task: Task, inputs: dict[str, Any]) -> list[str]:
    """Keywords a generate output should contain: the task's, plus the item's own `keywords` field."""
    own = list(task.spec.generate.keywords) if task.spec.generate else []
    return own + [k for k in inputs.get("keywords") or [] if k not in own]


def is_correct(task: Task, expected: Any, answer: Any, cause: str | None, text: str, keywords: list[str]) -> bool:
    """Whether a parsed answer is right. Generate items are right when every format rule passes."""
    if cause is not None:
        return False
    if task.kind == "extract":
        return scorers.json_equal(expected, answer)
    if task.kind == "generate":
        assert task.spec.generate is not None
        rules = [(r.name, r.pattern, r.must_match) for r in task.spec.generate.rules]
        return scorers.generate_report([text], rules, [keywords])["format_pass_rate"] == 1.0
    return answer == expected


def judge(task: Task, item: Item, repeat: int, resp: Response, cached: bool = False,
          constrained: bool = False) -> ItemRecord:
    """Parse one response and judge it: the single place where an answer becomes right, wrong or a failure."""
    parsed = parse_output(task, item.inputs, resp)
    correct = is_correct(task, item.expected, parsed.answer, parsed.cause, parsed.visible,
                         item_keywords(task, item.inputs))
    return ItemRecord(
        id=item.id, repeat=repeat, expected=item.expected, answer=parsed.answer, correct=correct,
        cause=parsed.cause or (None if correct else "wrong_answer"), text=resp.text,
        finish_reason=resp.finish_reason, latency_s=resp.latency_s, ttft_s=resp.ttft_s,
        prompt_tokens=resp.prompt_tokens, completion_tokens=resp.completion_tokens, cached=cached,
        # JSON was produced unless nothing parseable came out (a cut answer may still have parsed)
        valid_json=parsed.cause not in ("unparseable", "refused", "empty_after_thinking", "error")
        and not (parsed.cause == "cut_at_max_tokens" and parsed.answer is None),
        schema_valid=parsed.cause is None, constrained=constrained, unchecked_answer=parsed.unchecked)


def _valid(r: ItemRecord) -> Any:
    """The answer where the output was valid (right or wrong); None where it was not an answer at all."""
    return r.answer if r.cause in (None, "wrong_answer") else None


def extract_scores(task: Task, recs: Sequence[ItemRecord]) -> dict[str, Any]:
    """`scorers.extract_report` of an extraction task's records, with the model's unchecked relationships too
    when the task declares allowed triples."""
    ex = task.spec.extract
    assert ex is not None
    predicted = [r.answer if r.valid_json else None for r in recs]
    unchecked = None
    if ex.allowed_relationships:
        unchecked = [r.unchecked_answer if r.unchecked_answer is not None else p for r, p in zip(recs, predicted)]
    return scorers.extract_report(
        [r.expected for r in recs], predicted, [r.valid_json for r in recs], [r.schema_valid for r in recs],
        entities_key=ex.entities_key, entity_name_field=ex.entity_name_field,
        relationships_key=ex.relationships_key, relationship_fields=ex.relationship_fields, unchecked=unchecked)


def _kind_report(task: Task, recs: Sequence[ItemRecord], keywords: Sequence[list[str]]) -> dict[str, Any]:
    if task.kind == "classify":
        return scorers.classification_report([r.expected for r in recs], [_valid(r) for r in recs])
    if task.kind == "pick":
        assert task.spec.pick is not None
        return scorers.pick_report([r.expected for r in recs], [_valid(r) for r in recs], task.spec.pick.none_label)
    if task.kind == "extract":
        return extract_scores(task, recs)
    assert task.spec.generate is not None
    rules = [(r.name, r.pattern, r.must_match) for r in task.spec.generate.rules]
    # the visible answer (thinking stripped), not the raw text
    return scorers.generate_report([r.answer if isinstance(r.answer, str) else "" for r in recs], rules,
                                   list(keywords))


def metric_names(task: Task, item: Item) -> set[str]:
    """The metrics a report of this task's kind holds (numbers, or None where undefined), found by scoring `item`
    answered as expected: what a bar may name before any model has answered."""
    rec = ItemRecord(id=item.id, repeat=0, expected=item.expected, answer=item.expected, correct=True, cause=None,
                     text="", finish_reason="stop", latency_s=0.0, ttft_s=None, prompt_tokens=0,
                     completion_tokens=0, cached=False)
    report = _kind_report(task, [rec], [item_keywords(task, item.inputs)])
    report.update(report.get("counts") or {})
    return {k for k, v in report.items() if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}


def metric_on(task: Task, recs: Sequence[ItemRecord], keywords: Sequence[list[str]], metric: str,
              n_repeats: int = 1) -> Callable[[np.ndarray], float]:
    """A function of resampled item indices → the metric; repeats of one item travel together."""
    n_items = len(recs) // n_repeats

    def stat(idx: np.ndarray) -> float:
        obs = [recs[r * n_items + i] for r in range(n_repeats) for i in idx]
        kws = [keywords[i] for _ in range(n_repeats) for i in idx]
        value = _kind_report(task, obs, kws).get(metric)
        return float("nan") if value is None else float(value)

    return stat


def item_rates(task: Task, recs: Sequence[ItemRecord], keywords: Sequence[list[str]],
               n_repeats: int = 1) -> dict[str, list[float]]:
    """Each rate metric per item, over that item's repeats (items where it is undefined left out): the
    clusters of the rate's confidence interval."""
    n_items = len(recs) // n_repeats
    out: dict[str, list[float]] = {name: [] for name in RATE_METRICS}
    for i in range(n_items):
        report = _kind_report(task, [recs[r * n_items + i] for r in range(n_repeats)], [keywords[i]] * n_repeats)
        for name in RATE_METRICS:
            if isinstance(report.get(name), (int, float)):
                out[name].append(float(report[name]))
    return out


def score(task: Task, recs: list[ItemRecord], keywords: list[list[str]], n_repeats: int = 1,
          n_resamples: int = 1000) -> dict[str, Any]:
    """Metrics, CIs, failures and consistency for records ordered repeat-major (all items of repeat 0 first).

    An item's repeats are one cluster, never independent trials: rates get `stats.cluster_wilson_ci` on the
    per-item rates, F1s a bootstrap that resamples items with all their repeats."""
    n_items = len(recs) // n_repeats
    kw_all = [keywords[i % n_items] for i in range(len(recs))]
    report = _kind_report(task, recs, kw_all)
    report.update(report.get("counts") or {})  # pick: false_pick / wrong_pick / false_none as metrics
    for key in ("accuracy", "macro_f1", "per_class", "confusion"):  # the same keys for every kind
        report.setdefault(key, None)
    ci: dict[str, list[float] | None] = {}
    per_item = item_rates(task, recs, keywords, n_repeats)
    for name in RATE_METRICS:
        if isinstance(report.get(name), (int, float)) and per_item[name]:
            ci[name] = list(stats.cluster_wilson_ci(per_item[name], n_repeats))
    for name in F1_METRICS:
        if isinstance(report.get(name), (int, float)):
            ci[name] = list(stats.bootstrap_ci(metric_on(task, recs, keywords, name, n_repeats), n_items,
                                               n_resamples=n_resamples))
    failures = Counter(r.cause for r in recs if r.cause is not None)
    doc_failures = {cause: failures.get(cause, 0) for cause in FAILURE_CAUSES}
    consistency = None
    if n_repeats > 1:
        answers = [[_hashable(recs[r * n_items + i].answer) for r in range(n_repeats)] for i in range(n_items)]
        consistency = scorers.consistency(answers)
    return {"metrics": report, "ci": ci, "failures": doc_failures, "consistency": consistency}


def _hashable(value: Any) -> Any:
    import json

    return value if isinstance(value, (str, int, float, type(None))) else json.dumps(value, sort_keys=True)


def timing_summary(recs: Sequence[ItemRecord]) -> dict[str, Any]:
    """Latency and TTFT percentiles (ms), decode tokens/s and model-time items/s over all responses."""
    lat = np.array([r.latency_s for r in recs], dtype=float) * 1000
    ttft = np.array([r.ttft_s for r in recs if r.ttft_s is not None], dtype=float) * 1000
    gen_time = sum(max(r.latency_s - (r.ttft_s or 0.0), 0.0) for r in recs if r.completion_tokens > 1)
    gen_tokens = sum(r.completion_tokens - 1 for r in recs if r.completion_tokens > 1)

    def pct(a: np.ndarray) -> dict[str, float | None]:
        if a.size == 0:
            return {"p50": None, "p95": None, "mean": None}
        return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
                "mean": round(float(a.mean()), 2)}

    total = float(lat.sum()) / 1000
    return {
        "latency_ms": pct(lat),
        "ttft_ms": pct(ttft),
        "tokens_per_s": round(gen_tokens / gen_time, 2) if gen_time > 0 else None,
        "items_per_s": round(len(recs) / total, 3) if total > 0 else None,
        "prompt_tokens": {"mean": round(float(np.mean([r.prompt_tokens for r in recs])), 1)},
        "completion_tokens": {"mean": round(float(np.mean([r.completion_tokens for r in recs])), 1)},
    }

"""Anchor prompts: the package's known items, re-run live and scored against the gate's threshold (seed 004:
"20 known-good prompts run daily; alert if accuracy drops below the acceptance threshold")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from honed.backends import Backend
from honed.errors import UserError
from honed.evaluate.scoring import item_keywords, score
from honed.exporting.package import ANCHORS, Package
from honed.monitor.models import answer_items
from honed.store import canonical_json
from honed.task.data import Item, _check_expected
from honed.task.spec import Task


def check_anchors(pkg: Package, task: Task, backend: Backend,
                  on_done: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run every anchor through `backend`; PASS when the primary metric ≥ the manifest's acceptance min_value and
    every bar of the task's `[acceptance] min_metrics` holds, as the gate required of the tuned model.

    Also lists the anchors whose answer differs from the one recorded at export time: a changed answer on an
    unchanged prompt means the model, its runtime or its settings changed, even when the score holds.
    """
    if not (pkg.root / ANCHORS).is_file():
        raise UserError(f"{pkg.root}: the package has no {ANCHORS}; re-export it with `honed export RUN`")
    anchors = pkg.anchors()
    if not anchors:
        raise UserError(f"{pkg.root / ANCHORS}: no anchor items")
    acc = pkg.manifest.acceptance
    items = [Item(id=a.id, inputs=a.inputs, expected=a.expected) for a in anchors]
    for item in items:  # an expected answer outside the task's answer space cannot be scored: say which
        _check_expected(task, item, f"{pkg.root / ANCHORS}: anchor {item.id!r}")
    records = answer_items(task, backend, items, on_done)
    scored = score(task, records, [item_keywords(task, i.inputs) for i in items])
    value = scored["metrics"].get(acc.primary_metric)
    if value is None:
        have = sorted(k for k, v in scored["metrics"].items() if isinstance(v, (int, float)))
        raise UserError(f"{pkg.root / 'manifest.json'}: acceptance.primary_metric {acc.primary_metric!r} is not a "
                        f"metric of a {task.kind} task (it has {', '.join(have)})")
    changed = [{"id": a.id, "at_export": a.answer, "now": r.answer, "expected": a.expected, "correct": r.correct}
               for a, r in zip(anchors, records, strict=True)
               if canonical_json(a.answer) != canonical_json(r.answer)]
    bars = []  # the task's bars for its other metrics, as the gate checked them (`[acceptance] min_metrics`)
    for name, bar in task.spec.acceptance.min_metrics.items():
        got = scored["metrics"].get(name)
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            raise UserError(f"{task.source}: [acceptance] min_metrics names {name!r}, which the anchors' scores of a "
                            f"{task.kind} task do not report")
        bars.append({"metric": name, "value": float(got), "ci": scored["ci"].get(name), "bar": bar,
                     "passed": float(got) >= bar})
    primary_passed = float(value) >= acc.min_value
    return {
        "status": "PASS" if primary_passed and all(b["passed"] for b in bars) else "FAIL",
        "primary_metric": acc.primary_metric,
        "value": float(value),
        "ci": scored["ci"].get(acc.primary_metric),
        "min_value": acc.min_value,
        "primary_passed": primary_passed,
        "bars": bars,
        "n": len(anchors),
        "n_correct": sum(r.correct for r in records),
        "failures": {k: v for k, v in scored["failures"].items() if v},
        "changed_since_export": changed,
        "model": {"name": backend.info.name, "backend": backend.info.backend, "sha256": backend.info.sha256},
        "items": [{"id": r.id, "expected": r.expected, "answer": r.answer, "correct": r.correct, "cause": r.cause,
                   "latency_ms": round(r.latency_s * 1000, 1)} for r in records],
    }

"""What the package documents read from eval run folders: per-item records, confusions, fixes, failures.

Everything here is a pure function of a run folder's `items.jsonl` (plus the package's task and test items),
so benchmarks.md and usage.md never re-run a model and every number traces back to an eval run id.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from honed.evaluate import scorers
from honed.evaluate.document import EvalRun
from honed.evaluate.output import FAILURE_CAUSES
from honed.evaluate.scoring import ItemRecord, extract_scores, item_keywords
from honed.exporting.docs.markdown import cut
from honed.task.data import Item
from honed.task.spec import Task


def valid_answer(rec: ItemRecord) -> Any:
    """The answer where the output was an answer at all (right or wrong), else None: eval's own convention."""
    return rec.answer if rec.cause in (None, "wrong_answer") else None


def confusion(task: Task, records: list[ItemRecord]) -> dict[str, Any] | None:
    """The confusion matrix eval computes for these records (classify and pick); None for other kinds."""
    if task.kind == "classify":
        return scorers.classification_report([r.expected for r in records], [valid_answer(r) for r in records],
                                             labels=task.labels)["confusion"]
    if task.kind == "pick":
        assert task.spec.pick is not None
        return scorers.pick_report([r.expected for r in records], [valid_answer(r) for r in records],
                                   task.spec.pick.none_label)["confusion"]
    return None


def top_confusions(conf: dict[str, Any], n: int = 3) -> list[tuple[str, str, int, int]]:
    """The largest off-diagonal cells: (true, answered, count, row total), largest first."""
    cells = []
    for i, true in enumerate(conf["labels"]):
        row = conf["matrix"][i]
        for j, pred in enumerate(conf["columns"]):
            if pred != true and row[j] > 0:
                cells.append((true, pred, int(row[j]), int(sum(row))))
    return sorted(cells, key=lambda c: (-c[2], c[0], c[1]))[:n]


def kind_detail(task: Task, records: list[ItemRecord], items: dict[str, Item]) -> dict[str, Any]:
    """What stands in for a confusion matrix: per-field scores (extract), per-rule pass rates (generate)."""
    if task.kind == "extract":
        rep = extract_scores(task, records)
        shown = ("valid_json_rate", "schema_valid_rate", "exact_match", "record_f1", "field_f1", "entity_f1",
                 "relationship_f1") + (("relationship_unchecked_f1",) if "relationship_unchecked_f1" in rep else ())
        return {"rates": {k: rep.get(k) for k in shown},
                "per_field": rep.get("per_field") or {}}
    if task.kind == "generate":
        assert task.spec.generate is not None
        rules = [(r.name, r.pattern, r.must_match) for r in task.spec.generate.rules]
        kws = [item_keywords(task, items[r.id].inputs) if r.id in items else [] for r in records]
        rep = scorers.generate_report([r.answer if isinstance(r.answer, str) else "" for r in records], rules, kws)
        return {"rates": {k: rep.get(k) for k in ("format_pass_rate", "keyword_hit_rate")},
                "per_rule": rep.get("per_rule") or {}}
    return {}


@dataclass(frozen=True)
class Pair:
    """One item as the base and the tuned model answered it."""

    id: str
    base: ItemRecord
    tuned: ItemRecord
    change: str
    """fixed (base wrong, tuned right), broken (base right, tuned wrong), changed (both wrong, differently)."""


def _shown(rec: ItemRecord) -> str:
    if rec.answer is None:
        return rec.text
    return rec.answer if isinstance(rec.answer, str) else json.dumps(rec.answer, ensure_ascii=False)


def before_after(base: EvalRun, tuned: EvalRun, n: int = 5) -> list[Pair]:
    """Up to `n` items the tuned model fixed (topped up with items whose wrong answer changed), plus one it broke.

    Only items whose answers really differ are shown: an example where both models said the same teaches nothing.
    """
    b = base.by_id()
    fixed, changed, broken = [], [], []
    for t in tuned.first:
        if t.id not in b:
            continue
        r = b[t.id]
        if t.correct and not r.correct:
            fixed.append(Pair(t.id, r, t, "fixed"))
        elif r.correct and not t.correct:
            broken.append(Pair(t.id, r, t, "broken"))
        elif not t.correct and _shown(r) != _shown(t):
            changed.append(Pair(t.id, r, t, "changed"))
    return (fixed + changed)[:n] + broken[:1]


def failures_by_cause(records: list[ItemRecord]) -> dict[str, list[ItemRecord]]:
    """The records that are still wrong, grouped by failure cause in eval's order (empty causes left out)."""
    out: dict[str, list[ItemRecord]] = {}
    for cause in FAILURE_CAUSES:
        got = [r for r in records if not r.correct and r.cause == cause]
        if got:
            out[cause] = got
    return out


def wrong_pairs(records: list[ItemRecord]) -> Counter[tuple[str, str]]:
    """(expected, answered) counts of the wrong answers: the mistakes a classify/pick model repeats."""
    return Counter((str(r.expected), _shown(r)) for r in records
                   if r.cause == "wrong_answer")


def answer_text(rec: ItemRecord, limit: int = 200) -> str:
    """An answer as shown in the documents: the parsed answer, else the raw text, cut to one line."""
    return cut(_shown(rec), limit)

"""Shadow comparison: a candidate answers a sample of logged inputs next to the incumbent, item by item.

Paired, because both see the same inputs: agreement (the same valid answer) with a Wilson interval; each
side's validity rate and exact McNemar on validity; and, on the records whose log carries a trusted label,
each side's accuracy and exact McNemar on correctness. A trusted label is `signals.expected` (a label a person
or a harvest rule set), else the logged answer of a record with `signals.downstream_confirmed == true` (a
downstream check confirmed it); nothing else in a log says what the right answer was.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from honed.backends import Backend
from honed.data.logs import LogRecord
from honed.evaluate.stats import mcnemar_exact, wilson_ci
from honed.monitor.models import answer_items, is_valid
from honed.store import canonical_json
from honed.task.data import Item
from honed.task.spec import Task


def trusted_label(rec: LogRecord) -> tuple[Any, str | None]:
    """(label, where it came from), or (None, None) when the record has no trusted label."""
    if "expected" in rec.signals and rec.signals["expected"] is not None:
        return rec.signals["expected"], "signals.expected"
    if rec.signals.get("downstream_confirmed") is True and rec.answer is not None:
        return rec.answer, "signals.downstream_confirmed"
    return None, None


def sample_records(records: Sequence[LogRecord], n: int, seed: int = 0) -> list[LogRecord]:
    """Up to `n` records with distinct inputs, drawn at random (seeded), in log order."""
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        seen.setdefault(rec.input_hash, i)
    firsts = sorted(seen.values())
    chosen = sorted(random.Random(seed).sample(firsts, min(n, len(firsts))))
    return [records[i] for i in chosen]


def _rate(flags: Sequence[bool]) -> dict[str, Any]:
    k, n = sum(flags), len(flags)
    return {"rate": k / n if n else None, "ci": list(wilson_ci(k, n)), "k": k, "n": n}


def shadow_compare(task: Task, incumbent: Backend, candidate: Backend, records: Sequence[LogRecord], *,
                   labels: tuple[str, str] = ("incumbent", "candidate"),
                   on_done: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Both models answer the inputs of `records`; the paired statistics of the two."""
    items, sources = [], []
    for rec in records:
        label, source = trusted_label(rec)
        items.append(Item(id=rec.request_id, inputs=rec.input, expected=label))
        sources.append(source)
    inc = answer_items(task, incumbent, items, on_done)
    cand = answer_items(task, candidate, items, on_done)
    valid_i, valid_c = [is_valid(r) for r in inc], [is_valid(r) for r in cand]
    agree = [vi and vc and canonical_json(a.answer) == canonical_json(b.answer)
             for vi, vc, a, b in zip(valid_i, valid_c, inc, cand, strict=True)]
    doc: dict[str, Any] = {
        "n": len(items),
        "labels": {"incumbent": labels[0], "candidate": labels[1]},
        "models": {"incumbent": {"name": incumbent.info.name, "sha256": incumbent.info.sha256},
                   "candidate": {"name": candidate.info.name, "sha256": candidate.info.sha256}},
        "agreement": {**_rate(agree), "definition": "both answers valid and equal"},
        "validity": {"incumbent": _rate(valid_i), "candidate": _rate(valid_c),
                     "mcnemar": _mcnemar(valid_i, valid_c)},
    }
    trusted = [i for i, s in enumerate(sources) if s is not None]
    correct_i = [inc[i].correct for i in trusted]
    correct_c = [cand[i].correct for i in trusted]
    doc["correctness"] = {
        "n": len(trusted),
        "label_sources": sorted({s for s in sources if s is not None}),
        "incumbent": _rate(correct_i), "candidate": _rate(correct_c),
        "mcnemar": _mcnemar(correct_i, correct_c) if trusted else None,
        "note": None if trusted else "no logged record carries a trusted label (signals.expected or "
                                     "signals.downstream_confirmed): correctness is not compared",
    }
    doc["items"] = [{"request_id": it.id, "incumbent": a.answer, "candidate": b.answer, "agree": g,
                     "trusted_label": it.expected, "label_source": s}
                    for it, a, b, g, s in zip(items, inc, cand, agree, sources, strict=True)]
    return doc


def _mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    res = mcnemar_exact(a, b)
    return {"incumbent_only": res["a_only"], "candidate_only": res["b_only"], "p_value": res["p_value"],
            "test": "exact McNemar (two-sided binomial on the discordant pairs)"}

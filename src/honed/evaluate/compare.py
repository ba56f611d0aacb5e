"""`compare_runs(a, b)`: two runs of one task on the same items, compared pair by pair.

Accuracy: exact McNemar on the discordant items. The task's primary metric (macro-F1 and the like): a paired
bootstrap over items, resampling the same indices for both runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from honed.errors import UserError
from honed.evaluate import stats
from honed.evaluate.document import read_eval_run
from honed.evaluate.scoring import metric_on


def compare_runs(dir_a: Path, dir_b: Path, *, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of run B against run A (B - A)."""
    run_a, run_b = read_eval_run(dir_a), read_eval_run(dir_b)
    doc_a, doc_b, task = run_a.document, run_b.document, run_a.task()
    if doc_a.task != doc_b.task:
        raise UserError(f"runs are of different tasks ({doc_a.task} vs {doc_b.task}): nothing to pair")
    a0, b0 = run_a.by_id(), run_b.by_id()
    ids = [i for i in a0 if i in b0]
    if not ids:
        raise UserError("the two runs share no items: compare runs on the same split")
    if len(ids) < max(len(a0), len(b0)):
        note = f"compared on the {len(ids)} items both runs have ({len(a0)} vs {len(b0)})"
    else:
        note = f"{len(ids)} paired items"
    ra = [a0[i] for i in ids]
    rb = [b0[i] for i in ids]
    mc = stats.mcnemar_exact([r.correct for r in ra], [r.correct for r in rb])
    metric = doc_a.primary_metric or "accuracy"
    kws: list[list[str]] = [[] for _ in ids]
    stat_a = metric_on(task, ra, kws, metric)
    stat_b = metric_on(task, rb, kws, metric)
    boot = stats.paired_bootstrap(stat_a, stat_b, len(ids), n_resamples=n_resamples, seed=seed)
    all_idx = np.arange(len(ids))
    return {
        "task": doc_a.task,
        "a": {"run_id": doc_a.run_id, "model": doc_a.model.name, "sha256": doc_a.model.sha256},
        "b": {"run_id": doc_b.run_id, "model": doc_b.model.name, "sha256": doc_b.model.sha256},
        "n_paired": len(ids),
        "note": note,
        "accuracy": {"a": float(np.mean([r.correct for r in ra])), "b": float(np.mean([r.correct for r in rb])),
                     "mcnemar": mc},
        "primary": {"metric": metric, "a": stat_a(all_idx), "b": stat_b(all_idx), **boot},
    }


def markdown_comparison(cmp: dict[str, Any]) -> str:
    acc, prim = cmp["accuracy"], cmp["primary"]
    lo, hi = prim["ci"]
    return "\n".join([
        f"## {cmp['task']}: B `{cmp['b']['model']}` vs A `{cmp['a']['model']}` ({cmp['note']})",
        "",
        "| metric | A | B | B − A | test |",
        "|---|---|---|---|---|",
        f"| accuracy | {acc['a']:.3f} | {acc['b']:.3f} | {acc['b'] - acc['a']:+.3f} | exact McNemar: "
        f"{acc['mcnemar']['a_only']} right only in A, {acc['mcnemar']['b_only']} only in B, "
        f"p = {acc['mcnemar']['p_value']:.4f} |",
        f"| {prim['metric']} | {prim['a']:.3f} | {prim['b']:.3f} | {prim['diff']:+.3f} | paired bootstrap 95% CI "
        f"[{lo:+.3f}, {hi:+.3f}], p = {prim['p_value']:.4f} |",
        "",
        f"A: {cmp['a']['run_id']} · B: {cmp['b']['run_id']}",
        "",
    ])

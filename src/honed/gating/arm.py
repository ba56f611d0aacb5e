"""`--vs`: the tuned model against a named eval or bake-off arm run, paired on the test items both have.

The arm is read from its run folder (no model is loaded). It is loaded and checked before the gate evaluates
anything, so a wrong folder fails in a second, not after minutes of generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.errors import UserError
from honed.evaluate.document import EvalDocument, read_eval_run
from honed.evaluate.scoring import ItemRecord, item_keywords, metric_on
from honed.gating import checks
from honed.task.data import Item
from honed.task.spec import Task


@dataclass
class Arm:
    run_dir: Path
    document: EvalDocument
    records: dict[str, ItemRecord]
    """The arm's first-repeat answer per item id."""
    shared: list[int]
    """Indices (into the gate's items) of the items the arm answered."""


def load_arm(vs: Path, task: Task, items: list[Item]) -> Arm:
    """Read an arm run folder and check that it ran this task on this version of the test set."""
    run = read_eval_run(vs)
    if run.document.task != task.name:
        raise UserError(f"{vs}: the arm ran task {run.document.task!r}, the tune run is {task.name!r}: nothing to "
                        "pair")
    by_id = run.by_id()
    shared = [i for i, item in enumerate(items) if item.id in by_id]
    if not shared:
        raise UserError(f"{vs}: the arm run shares no item with the locked test; evaluate the arm on it: "
                        f"honed eval {task.root} --split test --model MODEL")
    changed = [items[i].id for i in shared if by_id[items[i].id].expected != items[i].expected]
    if changed:
        raise UserError(f"{vs}: the arm was scored against other expected answers for {len(changed)} item(s) "
                        f"(e.g. {changed[0]!r}): it ran on another version of the test set; re-run it")
    return Arm(vs, run.document, by_id, shared)


def compare_arm(arm: Arm, task: Task, items: list[Item], tuned: list[ItemRecord], metric: str, *,
                n_resamples: int = 2000, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """(gate.json's `vs_arm`, the vs_arm check): tuned − arm with a paired bootstrap CI on the shared items."""
    idx = arm.shared
    kws = [item_keywords(task, items[i].inputs) for i in idx]
    ra, rt = [arm.records[items[i].id] for i in idx], [tuned[i] for i in idx]
    imp = checks.paired_improvement(metric_on(task, ra, kws, metric), metric_on(task, rt, kws, metric), len(idx),
                                    n_resamples=n_resamples, seed=seed)
    model = arm.document.model.name
    check = checks.vs_arm_check({**imp, "n_paired": len(idx)}, metric, f"arm {model}")
    info = {"run_dir": str(arm.run_dir), "run_id": arm.document.run_id, "model": model,
            "backend": arm.document.model.backend, "n_paired": len(idx),
            "note": f"paired on the {len(idx)} test items both runs have" if len(idx) < len(items) else
            f"{len(idx)} paired items", "value": imp["base"], "tuned_value": imp["tuned"],
            "difference": imp["difference"], "difference_ci": imp["difference_ci"], "p_value": imp["p_value"],
            "passed": check["passed"]}
    return info, check

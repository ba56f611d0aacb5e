"""`honed tune` guardrails on the tiny model (tests/tiny_model.py), which learns the planted task in a few hundred
fast steps: the collapse alarm fires on a planted collapse, and the checkpoint is chosen by the validation metric
while train loss keeps falling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from honed.task.spec import load_task
from honed.train.config import TuneConfig
from honed.train.sft import tune
from tests.conftest import TINY_TUNE

pytestmark = pytest.mark.integration


def _relabel(task_dir: Path, split: str, fn: Any) -> None:
    path = task_dir / "data" / f"{split}.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(fn(r)) + "\n" for r in rows))


def test_collapse_alarm_fires_on_all_none_training(tiny_model: Any, planted_task: Path) -> None:
    _relabel(planted_task, "train", lambda r: {**r, "expected": "NONE"})
    cfg = TuneConfig(model=str(tiny_model.hf), **{**TINY_TUNE, "max_steps": 200, "eval_every": 20,
                                                   "collapse_patience": 2})
    summary = tune(load_task(planted_task), cfg)
    collapses = [a for a in summary.alarms if a.kind == "collapse"]
    assert collapses, summary.alarms
    assert "'NONE'" in collapses[0].message
    assert summary.selection.stopped_by == "collapse"
    assert summary.steps < 200  # it stopped, it did not train on
    curves = json.loads((Path(summary.run_dir) / "curves.json").read_text())
    assert curves["val"][-1]["top_answer"] == "NONE" and curves["val"][-1]["top_share"] >= 0.9
    assert [v["top_share"] >= 0.9 for v in curves["val"][-2:]] == [True, True]  # two passes in a row: patience 2


def test_best_checkpoint_is_chosen_by_val_metric_not_train_loss(tiny_model: Any, planted_task: Path) -> None:
    # val answers are a permutation of the labels with no fixed point: the better the model learns the rule
    # from train, the more surely it is wrong on val, while train loss keeps falling — the trap seed 000 fell into.
    perm = {"billing": "shipping", "shipping": "account_access", "account_access": "NONE", "NONE": "billing"}
    _relabel(planted_task, "val", lambda r: {**r, "expected": perm[r["expected"]]})
    cfg = TuneConfig(model=str(tiny_model.hf), **{**TINY_TUNE, "max_steps": 400, "eval_every": 50,
                                                   "on_collapse": "warn"})
    summary = tune(load_task(planted_task), cfg)
    run = Path(summary.run_dir)
    curves = json.loads((run / "curves.json").read_text())
    evals = [v for v in curves["val"] if v["step"] > 0]
    best = max(evals, key=lambda v: v["metric"])  # first of the maxima: later ties do not replace it
    sel = json.loads((run / "selection.json").read_text())
    assert sel["best_step"] == best["step"] == curves["best_step"]
    assert "val macro_f1" in sel["why"] and "train loss never picks" in sel["why"]
    assert best["metric"] > evals[-1]["metric"]  # val fell after the chosen step ...
    train = curves["train"]
    loss_at_best = [p["loss"] for p in train if p["step"] <= best["step"]][-1]
    assert train[-1]["loss"] < loss_at_best  # ... while train loss kept falling
    assert sel["best_step"] < summary.steps  # and the last step was not taken
    assert (run / "best" / "adapter_model.safetensors").exists() and (run / "curves.html").exists()

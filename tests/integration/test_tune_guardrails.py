"""`honed tune` guardrails on the real SmolLM2, a few CPU steps each: the collapse alarm fires on a planted
collapse, and the checkpoint is chosen by the validation metric while train loss keeps falling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from honed.task.spec import load_task
from honed.train.config import TuneConfig
from honed.train.sft import tune
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _task_with(tmp_path: Path, train_map, val_map, n_train: int = 48) -> Path:
    root = tmp_path / "task"
    shutil.copytree(EXAMPLES / "classify", root)
    for split, fn, n in (("train", train_map, n_train), ("val", val_map, None)):
        rows = [json.loads(x) for x in (root / "data" / f"{split}.jsonl").read_text().splitlines()][:n]
        (root / "data" / f"{split}.jsonl").write_text("".join(json.dumps(fn(r)) + "\n" for r in rows))
    return root


def test_collapse_alarm_fires_on_all_none_training(tmp_path: Path) -> None:
    root = _task_with(tmp_path, lambda r: {**r, "expected": "NONE"}, lambda r: r)
    cfg = TuneConfig(max_steps=12, eval_every=3, max_val_items=16, batch_size=8, collapse_patience=2,
                     replay_fraction=0.0, force=True)  # 48 tiny answers: the doomed-config guard would refuse
    summary = tune(load_task(root), cfg)
    collapses = [a for a in summary["alarms"] if a["kind"] == "collapse"]
    assert collapses, summary["alarms"]
    assert "'NONE'" in collapses[0]["message"]
    assert summary["selection"]["stopped_by"] == "collapse"
    assert summary["steps"] < 12  # it stopped, it did not train on
    curves = json.loads((Path(summary["run_dir"]) / "curves.json").read_text())
    assert curves["val"][-1]["top_answer"] == "NONE" and curves["val"][-1]["top_share"] >= 0.9


def test_best_checkpoint_is_chosen_by_val_metric_not_train_loss(tmp_path: Path) -> None:
    # val answers are a permutation of the labels: the better the model fits train, the worse val gets,
    # while train loss keeps falling — the trap seed 000 fell into.
    perm = {"billing": "shipping", "shipping": "bug_report", "bug_report": "feature_request",
            "feature_request": "account_access", "account_access": "NONE", "NONE": "billing"}
    root = _task_with(tmp_path, lambda r: r, lambda r: {**r, "expected": perm[r["expected"]]})
    # the full prompt: the base model answers inside the label set from step 0, so fitting train can only move val
    # away from its permuted answers (on the short tuned prompt it first learns the label set, and val rises)
    cfg = TuneConfig(max_steps=12, eval_every=3, max_val_items=16, batch_size=8, on_collapse="warn",
                     replay_fraction=0.0, force=True, prompt="base")
    summary = tune(load_task(root), cfg)
    run = Path(summary["run_dir"])
    curves = json.loads((run / "curves.json").read_text())
    evals = [v for v in curves["val"] if v["step"] > 0]
    best = max(evals, key=lambda v: v["metric"])  # first of the maxima: later ties do not replace it
    sel = json.loads((run / "selection.json").read_text())
    assert sel["best_step"] == best["step"] == curves["best_step"]
    assert "val macro_f1" in sel["why"] and "train loss never picks" in sel["why"]
    train = curves["train"]
    loss_at_best = [p["loss"] for p in train if p["step"] <= best["step"]][-1]
    assert train[-1]["loss"] < loss_at_best  # train loss kept falling after the chosen step
    assert sel["best_step"] < summary["steps"]  # and the last step was not taken
    assert (run / "best" / "adapter_model.safetensors").exists() and (run / "curves.html").exists()

"""What each stage's tracked run holds, read from planted run folders (no tracker, no model): the numbers are the
documents' own, CIs split into low/high, curves per step, big files left out of the artifacts; off without a
tracking URI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.tracking import log_stage, record_for
from tests.unit.planted_docs import eval_document, tune_summary

pytestmark = pytest.mark.unit

RESULT = eval_document(run_id="r1", data={"items_sha256": "d" * 64, "file_sha256": "f" * 64},
                       settings={"temperature": 0.0, "constrained": True, "stop": []},
                       model={"sha256": "a" * 64, "details": {"n_ctx": 4096}},
                       metrics={"accuracy": 0.75, "macro_f1": 0.5, "per_class": {"x": {"f1": 1.0}}},
                       ci={"accuracy": [0.25, 1.0], "macro_f1": [0.1, 0.9]},
                       failures={"unparseable": 1, "wrong_answer": 0}, latency_ms={"p50": 10.0, "p95": 20.5, "mean": None},
                       ttft_ms={"p50": 1.0}, tokens_per_s=90.0, items_per_s=None, peak_memory_mb=512.0, wall_s=1.5)


def _write(folder: Path, name: str, doc: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(doc))


def test_eval_record_is_result_json(tmp_path: Path) -> None:
    _write(tmp_path / "run", "result.json", RESULT)
    (tmp_path / "run" / "items.jsonl").write_text("{}\n")
    rec = record_for("eval", tmp_path / "run")
    assert rec.metrics == {"accuracy": 0.75, "macro_f1": 0.5, "accuracy_ci_low": 0.25, "accuracy_ci_high": 1.0,
                           "macro_f1_ci_low": 0.1, "macro_f1_ci_high": 0.9, "latency_ms_p50": 10.0,
                           "latency_ms_p95": 20.5, "ttft_ms_p50": 1.0, "tokens_per_s": 90.0,
                           "peak_memory_mb": 512.0, "failures_unparseable": 1.0, "failures_wrong_answer": 0.0,
                           "wall_s": 1.5}
    assert rec.params["model.sha256"] == "a" * 64 and rec.params["data.items_sha256"] == "d" * 64
    assert rec.params["settings.constrained"] == "true" and rec.params["settings.stop"] == "[]"
    assert "model.details.n_ctx" not in rec.params
    assert [f.name for f in rec.files] == ["items.jsonl", "result.json"] and rec.task == "mini"


def test_tune_curves_are_series_by_step_and_big_files_are_left_out(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "tune"
    _write(run, "manifest.json", {"task": "mini", "run_id": "t1", "base_model": {"name": "m", "sha256": "b" * 64},
                                  "data": {"train_items_sha256": "c" * 64}, "settings": {"rank": 8}})
    _write(run, "summary.json", tune_summary(steps=3, train_loss=0.5,
                                             selection={"best_value": 0.8, "base_value": 0.1, "best_step": 2}))
    _write(run, "curves.json", {"metric": "macro_f1", "train": [{"step": 1, "loss": 2.0, "lr": 1e-3},
                                                                {"step": 2, "loss": 1.0, "lr": 5e-4}],
                                "val": [{"step": 0, "metric": 0.1, "loss": 3.0}, {"step": 2, "metric": 0.8,
                                                                                   "loss": None}]})
    (run / "best").mkdir()
    (run / "best" / "adapter_model.safetensors").write_bytes(b"x" * 3000)
    monkeypatch.setenv("HONED_TRACK_MAX_MB", "0.001")  # ~1 KB: the adapter is "too big" here
    rec = record_for("tune", run)
    assert rec.series == {"train_loss": [(1, 2.0), (2, 1.0)], "train_lr": [(1, 1e-3), (2, 5e-4)],
                          "val_macro_f1": [(0, 0.1), (2, 0.8)], "val_loss": [(0, 3.0)]}
    assert rec.metrics["best_val"] == 0.8 and rec.metrics["base_val"] == 0.1
    assert rec.params["base_model.sha256"] == "b" * 64 and rec.params["settings.rank"] == "8"
    assert rec.skipped == ["best/adapter_model.safetensors"]
    assert "adapter_model.safetensors" not in [f.name for f in rec.files]


def test_gate_record_is_gate_json(tmp_path: Path) -> None:
    doc = {"status": "FAIL", "task": "mini", "run_id": "t1", "primary_metric": "macro_f1", "n_items": 4,
           "adapter_sha256": "e" * 64, "test_items_sha256": "9" * 64,
           "base": {"model": "m", "model_sha256": "b" * 64, "value": 0.2, "ci": [0.0, 0.5], "p95_ms": 9.0},
           "tuned": {"value": 0.25, "ci": [0.05, 0.6], "p95_ms": 11.0}, "difference": 0.05,
           "difference_ci": [-0.1, 0.2], "relative_improvement": 0.25, "relative_improvement_ci": [-0.5, 1.0],
           "p_value": 0.6, "threshold": 0.22,
           "checks": [{"name": "improvement", "passed": False}, {"name": "collapse", "passed": True}]}
    _write(tmp_path, "gate.json", doc)
    _write(tmp_path, "manifest.json", {})
    rec = record_for("gate", tmp_path)
    assert rec.metrics["passed"] == 0.0 and rec.params["status"] == "FAIL"
    assert (rec.metrics["base_value"], rec.metrics["tuned_value"], rec.metrics["difference"]) == (0.2, 0.25, 0.05)
    assert (rec.metrics["difference_ci_low"], rec.metrics["difference_ci_high"]) == (-0.1, 0.2)
    assert (rec.metrics["check_improvement"], rec.metrics["check_collapse"]) == (0.0, 1.0)
    assert rec.params["base.model_sha256"] == "b" * 64 and rec.params["adapter_sha256"] == "e" * 64
    assert [f.name for f in rec.files] == ["gate.json"]  # not the tune run's other files


def test_export_and_bakeoff_records(tmp_path: Path) -> None:
    _write(tmp_path, "manifest.json", {
        "task": "mini", "version": "v1", "recommended": "Q8_0", "tune": {"run_id": "t1"},
        "base_model": {"name": "m", "sha256": "b" * 64}, "files": {"m-Q8_0.gguf": "1" * 64},
        "rungs": [{"quant": "F16", "metrics": {"metric": 0.8, "ci": [0.7, 0.9], "p95_ms": 30.0}},
                  {"quant": "Q8_0", "metrics": {"metric": 0.79, "ci": [0.69, 0.89], "p95_ms": 20.0}}]})
    rec = record_for("export", tmp_path)
    assert rec.metrics["Q8_0/metric"] == 0.79 and rec.metrics["Q8_0/metric_ci_low"] == 0.69
    assert rec.metrics["Q8_0/recommended"] == 1.0 and rec.metrics["F16/recommended"] == 0.0
    assert rec.params["files.m-Q8_0.gguf"] == "1" * 64 and rec.run_id == "t1-export"
    doc = {"task": "mini", "split": "test", "n_items": 4, "primary_metric": "macro_f1", "best": "a",
           "arms": [{**RESULT, "label": "a", "cost_per_1k": 0.01}, {**RESULT, "label": "b c", "cost_per_1k": None}]}
    rec = record_for("bakeoff", None, doc)
    assert rec.metrics["a/macro_f1"] == 0.5 and rec.metrics["b_c/macro_f1_ci_high"] == 0.9
    assert rec.metrics["a/cost_per_1k"] == 0.01 and "b_c/cost_per_1k" not in rec.metrics
    assert rec.params["arm.a.model_sha256"] == "a" * 64 and rec.files == []


def test_off_without_a_tracker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert log_stage("eval", tmp_path / "nowhere") is None  # not even read
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(ValueError, match="unknown stage"):
        record_for("deploy", tmp_path)

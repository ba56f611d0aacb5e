"""Experiment tracking: each stage's run logged to MLflow (and W&B) when the user asks for it, read from the files
the stage wrote.

    log_stage(stage, run_dir, doc=None)   one call where eval, bakeoff, tune, gate or export finishes

Off unless `MLFLOW_TRACKING_URI` is set (e.g. `sqlite:///mlflow.db` or `file:./mlruns`) or, with `wandb`
installed, `WANDB_PROJECT`. The run folder stays the source of truth: a run is logged from its files (habit 6),
so what MLflow shows is what `result.json`, `gate.json` or the package manifest say, never a second computation.
Each run gets parameters (task, model sha256, data hashes, settings), metrics with their 95% CIs as `<m>_ci_low`
/ `<m>_ci_high`, a tune's curves per step, and the run folder's files as artifacts (files over `HONED_TRACK_MAX_MB`,
default 64, e.g. GGUFs, are listed in the `honed.skipped_artifacts` tag instead). MLflow's own variables apply
(`MLFLOW_EXPERIMENT_NAME`; else the experiment is `honed-<task>`). A tracking failure is a warning: the stage's
result stands, and `log_stage` can be called again on the folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("honed")
STAGES = ("eval", "bakeoff", "tune", "gate", "export")
_KEY = re.compile(r"[^\w\-./]")


@dataclass
class Record:
    """What one stage's run logs: its name, parameters, final metrics, per-step series and files."""

    stage: str
    task: str
    run_id: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    root: Path | None = None
    skipped: list[str] = field(default_factory=list)


def enabled() -> bool:
    """Whether any tracker is asked for."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("WANDB_PROJECT"))


def _key(name: str) -> str:
    return _KEY.sub("_", name)[:250]


def _numbers(prefix: str, value: Any, out: dict[str, float]) -> None:
    """Numeric leaves of `value` as flat metrics; a [low, high] pair under a `ci` key becomes _ci_low/_ci_high."""
    if isinstance(value, bool | int | float):
        out[_key(prefix)] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _numbers(f"{prefix}_{k}" if prefix and not prefix.endswith("/") else f"{prefix}{k}", v, out)


def _cis(prefix: str, cis: dict[str, Any] | None, out: dict[str, float]) -> None:
    for name, ci in (cis or {}).items():
        if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(x, int | float) for x in ci):
            out[_key(f"{prefix}{name}_ci_low")], out[_key(f"{prefix}{name}_ci_high")] = float(ci[0]), float(ci[1])


def _params(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _params(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        out[_key(prefix)] = text[:500]


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _eval(doc: dict[str, Any], prefix: str, rec: Record) -> None:
    """An eval document's metrics, CIs, latency and cost, under `prefix`."""
    for name, value in (doc.get("metrics") or {}).items():
        if name != "per_class":
            _numbers(f"{prefix}{name}", value, rec.metrics)
    _cis(prefix, doc.get("ci"), rec.metrics)
    for key in ("latency_ms", "ttft_ms", "tokens_per_s", "items_per_s", "peak_memory_mb", "failures",
                "cost_per_1k", "wall_s"):
        _numbers(f"{prefix}{key}", doc.get(key), rec.metrics)


def record_for(stage: str, run_dir: Path | None, doc: dict[str, Any] | None = None) -> Record:
    """The record of a finished stage, from its run folder (`doc`: a document with no folder, the bake-off's)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
    run_dir = Path(run_dir) if run_dir is not None else None
    files = sorted(p for p in run_dir.rglob("*") if p.is_file()) if run_dir is not None else []
    if stage == "eval":
        assert run_dir is not None
        from honed.evaluate.document import RESULT_FILE, read_eval_document

        doc = read_eval_document(run_dir / RESULT_FILE).as_json()
        rec = Record(stage, doc["task"], doc.get("run_id") or run_dir.name, root=run_dir, files=files)
        _params("", {"task": doc["task"], "kind": doc["kind"], "split": doc["split"], "n_items": doc["n_items"],
                     "primary_metric": doc["primary_metric"], "data": doc["data"], "settings": doc["settings"],
                     "model": {k: doc["model"].get(k) for k in ("name", "backend", "sha256", "prompt_format")}},
                rec.params)
        _eval(doc, "", rec)
    elif stage == "bakeoff":
        assert doc is not None
        rec = Record(stage, doc["task"], f"bakeoff-{doc['task']}-{time.strftime('%Y%m%d-%H%M%S')}")
        _params("", {"task": doc["task"], "split": doc.get("split"), "n_items": doc.get("n_items"),
                     "primary_metric": doc.get("primary_metric"), "best": doc.get("best"), "data": doc.get("data")},
                rec.params)
        for arm in doc.get("arms", []):
            label = _key(str(arm["label"]))
            _params(f"arm.{label}", {"model": (arm.get("model") or {}).get("name"),
                                     "model_sha256": (arm.get("model") or {}).get("sha256"),
                                     "run_id": arm.get("run_id"), "settings": arm.get("settings")}, rec.params)
            _eval(arm, f"{label}/", rec)
    elif stage == "tune":
        assert run_dir is not None
        from honed.train.summary import read_summary

        manifest, summary = _read(run_dir / "manifest.json"), read_summary(run_dir)
        curves = _read(run_dir / "curves.json")
        rec = Record(stage, manifest.get("task", "?"), manifest.get("run_id") or run_dir.name, root=run_dir,
                     files=files)
        _params("", {"task": manifest.get("task"), "method": manifest.get("method"), "prompt": manifest.get("prompt"),
                     "base_model": {k: (manifest.get("base_model") or {}).get(k) for k in ("name", "sha256")},
                     "data": manifest.get("data"), "config_sha256": manifest.get("config_sha256"),
                     "settings": manifest.get("settings"), "status": summary.status}, rec.params)
        sel = summary.selection
        _numbers("", {"best_val": sel.best_value, "base_val": sel.base_value,
                      "best_step": sel.best_step, "steps": summary.steps,
                      "final_train_loss": summary.train_loss, "train_seconds": summary.train_seconds,
                      "train_tokens_per_s": summary.train_tokens_per_s}, rec.metrics)
        for point in curves.get("train", []):
            for key in ("loss", "lr"):
                if isinstance(point.get(key), int | float):
                    rec.series.setdefault(f"train_{key}", []).append((int(point["step"]), float(point[key])))
        for point in curves.get("val", []):
            for key in ("metric", "loss"):
                if isinstance(point.get(key), int | float):
                    name = f"val_{curves.get('metric', 'metric')}" if key == "metric" else "val_loss"
                    rec.series.setdefault(name, []).append((int(point["step"]), float(point[key])))
    elif stage == "gate":
        assert run_dir is not None
        from honed.gating.run import GATE_FILE

        doc = _read(run_dir / GATE_FILE)
        gate_files = [run_dir / GATE_FILE] + sorted(run_dir.glob("gate*.json*"))
        rec = Record(stage, doc["task"], f"{doc['run_id']}-gate", root=run_dir,
                     files=list(dict.fromkeys(f for f in gate_files if f.is_file())))
        _params("", {k: doc.get(k) for k in ("status", "task", "primary_metric", "split", "n_items", "n_test",
                                             "limited", "test_items_sha256", "adapter_sha256", "run_id",
                                             "min_relative_improvement", "min_value", "prompt", "constrained")},
                rec.params)
        _params("base", {"model": doc["base"].get("model"), "model_sha256": doc["base"].get("model_sha256")},
                rec.params)
        rec.metrics["passed"] = float(doc["status"] == "PASS")
        _numbers("", {k: doc.get(k) for k in ("difference", "relative_improvement", "p_value", "threshold")},
                 rec.metrics)
        _numbers("", {side: {"value": doc[side]["value"], "p95_ms": doc[side].get("p95_ms")}
                      for side in ("base", "tuned")}, rec.metrics)
        _cis("", {"base_value": doc["base"].get("ci"), "tuned_value": doc["tuned"].get("ci"),
                  "difference": doc.get("difference_ci"), "relative_improvement": doc.get("relative_improvement_ci")},
             rec.metrics)
        for c in doc.get("checks", []):
            rec.metrics[_key(f"check_{c['name']}")] = float(bool(c["passed"]))
    else:  # export: the package folder
        assert run_dir is not None
        m = _read(run_dir / "manifest.json")
        rec = Record(stage, m.get("task", "?"), f"{(m.get('tune') or {}).get('run_id', run_dir.name)}-export",
                     root=run_dir, files=files)
        _params("", {k: m.get(k) for k in ("task", "kind", "version", "recommended", "prompt", "hashes")},
                rec.params)
        _params("base_model", {k: (m.get("base_model") or {}).get(k) for k in ("name", "sha256")}, rec.params)
        _params("files", m.get("files"), rec.params)
        for rung in m.get("rungs", []):
            q = _key(str(rung["quant"]))
            metrics = dict(rung.get("metrics") or {})
            _cis(f"{q}/", {"metric": metrics.pop("ci", None)}, rec.metrics)
            _numbers(q + "/", metrics, rec.metrics)
            rec.metrics[f"{q}/recommended"] = float(rung["quant"] == m.get("recommended"))
    limit = float(os.environ.get("HONED_TRACK_MAX_MB", "64")) * (1 << 20)
    rec.skipped = [str(f.relative_to(rec.root) if rec.root else f) for f in rec.files if f.stat().st_size > limit]
    rec.files = [f for f in rec.files if f.stat().st_size <= limit]
    return rec


def log_stage(stage: str, run_dir: Path | None, doc: dict[str, Any] | None = None) -> str | None:
    """Log a finished stage to the trackers asked for; returns the MLflow run id (None when MLflow is off).

    Never raises for a tracker's sake: a failure is a warning, the stage's own result stands."""
    if not enabled():
        return None
    try:
        rec = record_for(stage, run_dir, doc)
        run_id = _mlflow(rec, doc) if os.environ.get("MLFLOW_TRACKING_URI") else None
        if os.environ.get("WANDB_PROJECT"):
            _wandb(rec)
        return run_id
    except Exception as exc:  # noqa: BLE001 - tracking is a copy of the run folder: it must not fail the stage
        log.warning("experiment tracking of the %s run failed (%s: %s); its run folder has everything",
                    stage, type(exc).__name__, exc)
        return None


def _mlflow(rec: Record, doc: dict[str, Any] | None) -> str | None:
    try:
        import mlflow
        from mlflow.entities import Metric, Param
    except ImportError:
        log.warning("MLFLOW_TRACKING_URI is set but mlflow is not installed; run: pip install \"honed[track]\"")
        return None
    client = mlflow.MlflowClient()
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"honed-{rec.task}"
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
    tags = {"honed.stage": rec.stage, "honed.run_id": rec.run_id, "mlflow.runName": f"{rec.stage} {rec.run_id}"}
    if rec.root is not None:
        tags["honed.run_dir"] = str(rec.root)
    if rec.skipped:
        tags["honed.skipped_artifacts"] = ", ".join(rec.skipped)[:5000]
    run = client.create_run(exp_id, tags=tags)
    rid = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in rec.metrics.items()]
    metrics += [Metric(k, v, now, step) for k, points in rec.series.items() for step, v in points]
    params = [Param(k, v) for k, v in rec.params.items()]
    for i in range(0, max(len(metrics), len(params)), 100):
        client.log_batch(rid, metrics=metrics[i:i + 100], params=params[i:i + 100])
    for f in rec.files:
        rel = f.relative_to(rec.root).parent if rec.root else Path()
        client.log_artifact(rid, str(f), None if str(rel) == "." else str(rel))
    if doc is not None and rec.root is None:  # a document without a folder (the bake-off): logged as a file
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{rec.stage}.json"
            path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
            client.log_artifact(rid, str(path))
    client.set_terminated(rid, "FINISHED")
    return str(rid)


def _wandb(rec: Record) -> None:
    try:
        import wandb
    except ImportError:
        log.warning("WANDB_PROJECT is set but wandb is not installed; run: pip install wandb")
        return
    run = wandb.init(project=os.environ["WANDB_PROJECT"], name=f"{rec.stage} {rec.run_id}", job_type=rec.stage,
                     config=rec.params, reinit=True)
    try:
        steps = sorted({s for points in rec.series.values() for s, _ in points})
        for step in steps:
            run.log({k: v for k, points in rec.series.items() for s, v in points if s == step}, step=step)
        run.summary.update(rec.metrics)
        if rec.files:
            art = wandb.Artifact(_KEY.sub("-", f"{rec.stage}-{rec.run_id}")[:120], type=rec.stage)
            for f in rec.files:
                art.add_file(str(f), name=str(f.relative_to(rec.root)) if rec.root else f.name)
            run.log_artifact(art)
    finally:
        run.finish()

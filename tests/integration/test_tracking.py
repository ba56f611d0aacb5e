"""Experiment tracking as a user turns it on: `MLFLOW_TRACKING_URI=sqlite:///…`, then `honed eval`, a tiny
`honed tune` and `honed gate` as subprocesses, and the runs read back through MLflow's own client: the metrics are
the run folders' numbers, the files are there as artifacts, and the tune's curves are there step by step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow  # installed by `scripts/setup --dev` (honed[track]): a missing MLflow fails here, it does not skip
import pytest

from tests.conftest import TINY_TUNE, honed_cli

pytestmark = pytest.mark.integration


def _artifacts(client: Any, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_eval_tune_and_gate_are_logged_to_mlflow(tiny_model: Any, planted_task: Path, tmp_path: Path,
                                                 honed_home: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri}
    ev = honed_cli("eval", str(planted_task), "--model", str(tiny_model.gguf), env=env, cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    (eval_dir,) = (honed_home / "runs").glob("*-eval-*")
    config = tmp_path / "tune.toml"
    config.write_text("[tune]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in
                                           {**TINY_TUNE, "max_steps": 40, "eval_every": 20}.items()))
    tune = honed_cli("tune", str(planted_task), "--model", str(tiny_model.hf), "--config", str(config), env=env,
                     cwd=tmp_path)
    assert tune.returncode == 0, tune.stderr
    (tune_dir,) = (honed_home / "runs").glob("*-tune-*")
    gate = honed_cli("gate", str(tune_dir), env=env, cwd=tmp_path)
    assert gate.returncode in (0, 1), gate.stderr  # PASS or FAIL: both are verdicts to log
    assert "experiment tracking" not in ev.stderr + tune.stderr + gate.stderr  # no tracking warning

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("honed-planted")
    runs = {r.data.tags["honed.stage"]: r for r in client.search_runs([exp.experiment_id])}
    assert sorted(runs) == ["eval", "gate", "tune"]

    result = json.loads((eval_dir / "result.json").read_text())
    run = runs["eval"]
    m, p = run.data.metrics, run.data.params
    assert m["macro_f1"] == result["metrics"]["macro_f1"] and m["accuracy"] == result["metrics"]["accuracy"]
    assert [m["macro_f1_ci_low"], m["macro_f1_ci_high"]] == result["ci"]["macro_f1"]
    assert m["latency_ms_p95"] == result["latency_ms"]["p95"]
    assert m["failures_cut_at_max_tokens"] == result["failures"]["cut_at_max_tokens"]
    assert p["model.sha256"] == result["model"]["sha256"] and len(p["model.sha256"]) == 64
    assert p["data.items_sha256"] == result["data"]["items_sha256"]
    assert p["settings.constrained"] == json.dumps(result["settings"]["constrained"])
    assert {"result.json", "items.jsonl", "manifest.json", "summary.md", "task.json"} <= \
        _artifacts(client, run.info.run_id)

    manifest = json.loads((tune_dir / "manifest.json").read_text())
    curves = json.loads((tune_dir / "curves.json").read_text())
    run = runs["tune"]
    assert run.data.params["base_model.sha256"] == manifest["base_model"]["sha256"]
    assert run.data.params["data.train_items_sha256"] == manifest["data"]["train_items_sha256"]
    loss = client.get_metric_history(run.info.run_id, "train_loss")
    assert [(h.step, h.value) for h in sorted(loss, key=lambda h: h.step)] == \
        [(c["step"], c["loss"]) for c in curves["train"]]
    assert len(loss) >= 2
    val = client.get_metric_history(run.info.run_id, f"val_{curves['metric']}")
    assert sorted((h.step, h.value) for h in val) == [(c["step"], c["metric"]) for c in curves["val"]]
    assert {"summary.json", "curves.json", "manifest.json", "best"} <= _artifacts(client, run.info.run_id)
    assert "best/adapter_config.json" in _artifacts(client, run.info.run_id, "best")

    doc = json.loads((tune_dir / "gate.json").read_text())
    run = runs["gate"]
    m = run.data.metrics
    assert m["base_value"] == doc["base"]["value"] and m["tuned_value"] == doc["tuned"]["value"]
    assert m["difference"] == doc["difference"] and m["p_value"] == doc["p_value"]
    assert [m["difference_ci_low"], m["difference_ci_high"]] == doc["difference_ci"]
    assert [m["tuned_value_ci_low"], m["tuned_value_ci_high"]] == doc["tuned"]["ci"]
    assert m["passed"] == float(doc["status"] == "PASS") and run.data.params["status"] == doc["status"]
    assert run.data.params["adapter_sha256"] == doc["adapter_sha256"]
    assert "gate.json" in _artifacts(client, run.info.run_id)

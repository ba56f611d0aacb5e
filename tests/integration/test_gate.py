"""`honed gate` through transformers on the tiny model (tests/tiny_model.py): a planted do-nothing adapter fails,
a real tune run of the planted task is gated end to end with `--json`, and its verdict follows from its numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import honed_cli as honed

pytestmark = pytest.mark.integration

CONTRACT_KEYS = {"status", "created", "run_id", "task", "task_dir", "primary_metric", "split", "n_items", "base",
                 "tuned", "relative_improvement", "relative_improvement_ci", "difference", "difference_ci",
                 "p_value", "min_relative_improvement", "threshold", "min_value", "prompt", "checks", "vs_arm",
                 "limited", "n_test", "test_items_sha256", "adapter_sha256", "constrained"}
CHECKS = ["improvement", "forgetting", "collapse", "latency", "min_value"]


def _task(tmp_path: Path) -> Path:
    from tests.tiny_model import write_planted_task

    # the planted task with a bar of its own, so the gate's threshold is max(relative floor, min_value)
    return write_planted_task(tmp_path / "task", "\n[acceptance]\nmin_value = 0.5\n")


def planted_run(tmp_path: Path, task_dir: Path, base_model: str) -> Path:
    """A run folder laid out like tune's whose adapter is freshly initialised: LoRA B = 0, so tuned == base."""
    import torch
    from peft import LoraConfig, get_peft_model

    from honed.train.loading import load_base

    loaded = load_base(base_model)
    model = get_peft_model(loaded.model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                    task_type="CAUSAL_LM"))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.count_nonzero(p) == 0 for p in lora_b)  # the adapter adds exactly nothing
    run = tmp_path / "planted-run"
    model.save_pretrained(str(run / "best"))
    manifest = {"run_id": "planted-run", "task": "planted", "task_dir": str(task_dir),
                "base_model": {"name": base_model, "path": loaded.source, "sha256": loaded.sha256,
                               "from_gguf": False}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "summary.json").write_text(json.dumps({"run_id": "planted-run", "status": "complete"}))  # finished
    return run


def _assert_contract(doc: dict, n_items: int) -> None:
    assert set(doc) == CONTRACT_KEYS
    assert doc["split"] == "test" and doc["n_items"] == n_items and doc["primary_metric"] == "macro_f1"
    assert [c["name"] for c in doc["checks"]] == CHECKS
    assert all(isinstance(c["passed"], bool) and c["detail"] for c in doc["checks"])
    for side in ("base", "tuned"):
        s = doc[side]
        assert {"model", "value", "ci", "p95_ms", "eval_run_dir"} <= set(s)
        assert s["ci"][0] <= s["value"] <= s["ci"][1] and s["p95_ms"] > 0
        ev = Path(s["eval_run_dir"])
        result = json.loads((ev / "result.json").read_text())
        assert result["n_items"] == n_items and result["model"]["backend"] == "transformers"
        assert result["metrics"]["macro_f1"] == pytest.approx(s["value"])
        assert len((ev / "items.jsonl").read_text().splitlines()) == n_items
    assert len(doc["base"]["model_sha256"]) == 64 and doc["tuned"]["adapter"].endswith("best")
    assert doc["difference"] == pytest.approx(doc["tuned"]["value"] - doc["base"]["value"])
    relative = (doc["base"]["value"] * (1 + doc["min_relative_improvement"]) if doc["base"]["value"] > 0
                else doc["min_relative_improvement"])
    assert doc["min_value"] == 0.5  # the task's own bar
    assert doc["threshold"] == pytest.approx(max(relative, doc["min_value"]))
    assert doc["limited"] is True and doc["n_test"] == 24 and doc["n_items"] < 24


def test_planted_non_improving_adapter_fails(tiny_model: Any, tmp_path: Path, honed_home: Path) -> None:
    task_dir = _task(tmp_path)
    run = planted_run(tmp_path, task_dir, str(tiny_model.hf))
    proc = honed("gate", str(run), "--limit", "6", home=honed_home)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout and "improvement" in proc.stdout
    doc = json.loads((run / "gate.json").read_text())
    _assert_contract(doc, 6)
    assert doc["status"] == "FAIL"
    # the adapter is a no-op: every answer is the base's, so the difference is exactly 0 and not significant
    assert doc["tuned"]["value"] == doc["base"]["value"] and doc["difference_ci"] == [0.0, 0.0]
    improvement = doc["checks"][0]
    assert not improvement["passed"] and "not significant" in improvement["failed_because"]
    forgetting = doc["checks"][1]
    assert forgetting["base_nll"] == pytest.approx(forgetting["tuned_nll"], rel=1e-4)  # B = 0: the same model
    base_items = (Path(doc["base"]["eval_run_dir"]) / "items.jsonl").read_text().splitlines()
    tuned_items = (Path(doc["tuned"]["eval_run_dir"]) / "items.jsonl").read_text().splitlines()
    assert [json.loads(x)["text"] for x in base_items] == [json.loads(x)["text"] for x in tuned_items]
    # a re-run on unchanged inputs reuses the recorded evaluations (no model load) and reaches the same verdict
    again = honed("gate", str(run), "--limit", "6", "--json", home=honed_home)
    assert again.returncode == 1 and "reusing the evaluations" in again.stderr
    doc2 = json.loads(again.stdout)
    assert doc2["status"] == "FAIL" and doc2["difference_ci"] == doc["difference_ci"]
    assert doc2["checks"] == doc["checks"] and doc2["base"] == doc["base"]
    # and export, reading gate.json, refuses the run (before any work)
    export = honed("export", str(run), "--out", str(tmp_path / "pkg"), home=honed_home, timeout=300)
    assert export.returncode == 2 and "the gate FAILED" in export.stderr and "improvement" in export.stderr
    assert not (tmp_path / "pkg" / "manifest.json").exists()


def test_real_tune_run_gated_end_to_end(tiny_tuned: dict[str, Any], tmp_path: Path, honed_home: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_tuned["run"], run)
    (run / "manifest.json").write_text((run / "manifest.json").read_text().replace(
        json.dumps(str(tiny_tuned["task_dir"])), json.dumps(str(_task(tmp_path)))))  # the task with a bar
    summary = tiny_tuned["summary"]
    proc = honed("gate", str(run), "--limit", "6", "--json", home=honed_home)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)  # stdout is the JSON document alone
    _assert_contract(doc, 6)
    assert doc == json.loads((run / "gate.json").read_text())
    assert doc["run_id"] == summary.run_id and doc["tuned"]["adapter"] == str(run / "best")
    assert proc.returncode == (0 if doc["status"] == "PASS" else 1)
    # the random base answers no label at all; the tuned model learned the planted rule
    assert doc["base"]["value"] == 0.0 and doc["tuned"]["value"] >= 0.5
    # the verdict follows from the numbers
    imp = doc["checks"][0]
    size_ok = (doc["relative_improvement"] >= doc["min_relative_improvement"] - 1e-12
               if doc["relative_improvement"] is not None else doc["tuned"]["value"] >= doc["threshold"])
    assert imp["passed"] == (size_ok and doc["difference_ci"][0] > 0)
    forgetting = doc["checks"][1]
    assert forgetting["passed"] == (forgetting["tuned_nll"] / forgetting["base_nll"] - 1 <= 0.25 + 1e-12)
    assert doc["checks"][3]["passed"] and "no budget set" in doc["checks"][3]["detail"]
    assert (doc["status"] == "PASS") == all(c["passed"] for c in doc["checks"])

    # --vs with the base's own eval run as the arm: instant (the evaluations are reused), and the paired
    # comparison must reproduce the gate's own tuned − base numbers
    vs = honed("gate", str(run), "--limit", "6", "--json", "--vs", doc["base"]["eval_run_dir"], home=honed_home)
    assert vs.returncode == proc.returncode and "reusing the evaluations" in vs.stderr
    arm = json.loads(vs.stdout)["vs_arm"]
    assert arm["n_paired"] == 6 and arm["value"] == doc["base"]["value"]
    assert arm["difference"] == pytest.approx(doc["difference"]) and arm["difference_ci"] == doc["difference_ci"]
    assert json.loads(vs.stdout)["checks"][-1]["name"] == "vs_arm"

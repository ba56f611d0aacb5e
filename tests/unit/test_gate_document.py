"""gate.json is a typed document with one reader: a key `honed gate` did not write is refused where it is read,
naming the file, and a document round-trips through the reader unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from honed.errors import UserError
from honed.gating.document import GATE_FILE, GateDocument, read_gate_document

pytestmark = pytest.mark.unit


def _doc(**over: Any) -> dict[str, Any]:
    side = {"model": "m", "value": 0.5, "ci": [0.3, 0.7], "p95_ms": 12.0, "eval_run_dir": "/runs/e1"}
    doc = {"status": "PASS", "created": "2026-11-29T00:00:00+00:00", "run_id": "r1", "task": "t", "task_dir": "/t",
           "primary_metric": "macro_f1", "split": "test", "n_items": 4, "n_test": 4, "limited": False,
           "test_items_sha256": "t" * 64, "adapter_sha256": "a" * 64,
           "base": {**side, "model_sha256": "b" * 64}, "tuned": {**side, "value": 0.9, "adapter": "/r1/best"},
           "relative_improvement": 0.8, "relative_improvement_ci": [0.2, 1.5], "difference": 0.4,
           "difference_ci": [0.1, 0.7], "p_value": 0.01, "min_relative_improvement": 0.1, "threshold": 0.55,
           "min_value": None, "prompt": {"base": "base", "tuned": "tuned"},
           "constrained": {"base": True, "tuned": True},
           "checks": [{"name": "improvement", "passed": True, "detail": "ok", "base": 0.5, "tuned": 0.9,
                       "relative_improvement": 0.8, "difference_ci": [0.1, 0.7], "threshold": 0.55,
                       "failed_because": []},
                      {"name": "latency", "passed": True, "detail": "no budget set", "p95_ms": 12.0,
                       "budget_ms": None}],
           "vs_arm": None}
    return {**doc, **over}


def test_a_gate_document_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / GATE_FILE
    path.write_text(json.dumps(_doc()))
    doc = read_gate_document(path)
    assert doc.passed and doc.constrained.tuned is True and doc.tuned.adapter == "/r1/best"
    assert doc.as_json() == _doc()  # each check keeps its own numbers, nothing added
    assert [c.name for c in doc.failed_checks] == []


def test_a_key_gate_never_writes_is_refused_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / GATE_FILE
    path.write_text(json.dumps(_doc(verdict="PASS")))
    with pytest.raises(UserError, match=r"gate\.json.*verdict") as exc:
        read_gate_document(path)
    assert "re-run `honed gate" in str(exc.value)
    path.write_text(json.dumps({k: v for k, v in _doc().items() if k != "constrained"}))
    with pytest.raises(UserError, match="constrained"):
        read_gate_document(path)
    path.write_text("{not json")
    with pytest.raises(UserError, match="not a gate document"):
        read_gate_document(path)
    GateDocument.model_validate(_doc())  # control: the complete document is one

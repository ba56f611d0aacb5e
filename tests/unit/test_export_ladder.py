"""Choosing the rung by task score, answer agreement, the ladder table, and gate refusal — no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.errors import UserError
from honed.evaluate.scoring import ItemRecord
from honed.exporting.export import read_gate
from honed.exporting.ladder import agreement, choose_rung, ladder_markdown

pytestmark = pytest.mark.unit
SIZES = {"F16": 260.0, "Q8_0": 140.0, "Q4_K_M": 100.0}


def _rungs(f16: float, q8: float, q4: float) -> list[dict]:
    return [{"quant": q, "metric": v} for q, v in (("F16", f16), ("Q8_0", q8), ("Q4_K_M", q4))]


def test_smallest_rung_within_tolerance_wins() -> None:
    quant, why = choose_rung(_rungs(0.90, 0.90, 0.89), SIZES, 0.02)
    assert quant == "Q4_K_M" and "smallest" in why


def test_a_rung_losing_more_than_tolerance_is_passed_over_and_named() -> None:
    quant, why = choose_rung(_rungs(0.90, 0.89, 0.80), SIZES, 0.02)
    assert quant == "Q8_0"
    assert "Q4_K_M (0.800: more than 0.02 below F16's 0.900)" in why


def test_exactly_at_tolerance_passes() -> None:
    assert choose_rung(_rungs(0.90, 0.90, 0.88), SIZES, 0.02)[0] == "Q4_K_M"


def test_f16_when_every_quant_drops() -> None:
    assert choose_rung(_rungs(0.9, 0.5, 0.4), SIZES, 0.02)[0] == "F16"


def test_acceptance_minimum_also_applies_when_f16_clears_it() -> None:
    assert choose_rung(_rungs(0.90, 0.90, 0.885), SIZES, 0.02, min_value=0.89)[0] == "Q8_0"
    # F16 itself under the minimum (a forced export): the minimum cannot be met, tolerance alone decides
    assert choose_rung(_rungs(0.50, 0.50, 0.49), SIZES, 0.02, min_value=0.8)[0] == "Q4_K_M"


def test_a_rung_below_one_of_the_tasks_other_bars_is_passed_over_when_f16_meets_it() -> None:
    # examples/extract's export on 2026-12-07: Q4_K_M kept record F1 within reach but lost the relationships
    rungs = _rungs(0.871, 0.877, 0.860)
    for r, rel in zip(rungs, (0.697, 0.687, 0.567), strict=True):
        r["bars"] = {"relationship_f1": rel, "valid_json_rate": 1.0}
    bars = {"relationship_f1": 0.60, "valid_json_rate": 1.0}
    quant, why = choose_rung(rungs, SIZES, 0.02, min_value=0.72, bars=bars)
    assert quant == "Q8_0"
    assert "Q4_K_M (relationship_f1 0.567 below the task's bar 0.600)" in why
    assert "meeting the task's bars on relationship_f1, valid_json_rate" in why
    assert choose_rung(rungs, SIZES, 0.02, min_value=0.72)[0] == "Q4_K_M"  # without the bars: the primary alone
    # a bar F16 itself misses (a forced export) cannot be met by any rung: it does not decide
    rungs[0]["bars"]["relationship_f1"] = 0.55
    assert choose_rung(rungs, SIZES, 0.02, min_value=0.72, bars=bars)[0] == "Q4_K_M"


def _rec(i: str, answer: object, text: str = "") -> ItemRecord:
    return ItemRecord(id=i, repeat=0, expected=None, answer=answer, correct=False, cause=None, text=text,
                      finish_reason="stop", latency_s=0.1, ttft_s=None, prompt_tokens=1, completion_tokens=1,
                      cached=False)


def test_agreement_compares_answers_item_by_item() -> None:
    ref = [_rec("a", "x"), _rec("b", {"k": 1, "j": 2}), _rec("c", None, "garble")]
    got = [_rec("a", "x"), _rec("b", {"j": 2, "k": 1}), _rec("c", None, "other"), _rec("z", "x")]
    assert agreement(got, ref) == (2, 3)


def test_ladder_markdown_marks_the_recommended_rung() -> None:
    ladder = {"rungs": [{"quant": "F16", "metric": 0.9, "ci": [0.8, 1.0], "p50_ms": 100.0, "p95_ms": 150.0,
                         "peak_memory_mb": 700.0, "cost_per_1k": 0.01, "agreement_with_merged": 1.0},
                        {"quant": "Q8_0", "metric": 0.9, "ci": None, "p50_ms": 80.0, "p95_ms": 90.0,
                         "peak_memory_mb": None, "cost_per_1k": None, "agreement_with_merged": None}],
              "recommended": "Q8_0", "why": "smallest"}
    md = ladder_markdown(ladder, "macro_f1")
    assert "| Q8_0 **(recommended)** | 0.900 | — |" in md and "| F16 | 0.900 | [0.800, 1.000] |" in md
    assert "100%" in md
    for r, rel in zip(ladder["rungs"], (0.7, 0.55), strict=True):  # the task's min_metrics get a column each
        r["bars"] = {"relationship_f1": rel}
    md = ladder_markdown(ladder, "record_f1")
    assert "| rung | record_f1 | 95% CI | relationship_f1 | P50 ms |" in md and "|---" * 9 + "|" in md
    assert "| Q8_0 **(recommended)** | 0.900 | — | 0.550 | 80.0 |" in md


BOUND = {"adapter_sha256": "a" * 64, "test_items_sha256": "t" * 64}
"""What read_gate is told the run holds now; `_gate` writes a gate.json bound to it."""


def _gate(run: Path, status: str) -> None:
    run.mkdir(exist_ok=True)
    side = {"model": "m", "value": 0.45, "ci": [0.3, 0.6], "p95_ms": 10.0, "eval_run_dir": str(run / "eval")}
    (run / "gate.json").write_text(json.dumps({
        "status": status, "created": "2026-11-29T00:00:00+00:00", "run_id": "r", "task": "t", "task_dir": "t",
        "primary_metric": "macro_f1", "split": "test", "n_items": 12, "n_test": 12, "limited": False, **BOUND,
        "base": side, "tuned": {**side, "value": 0.4}, "relative_improvement": -0.11,
        "relative_improvement_ci": [-0.3, 0.1], "difference": -0.05, "difference_ci": [-0.2, 0.1], "p_value": 0.6,
        "min_relative_improvement": 0.1, "threshold": 0.5, "min_value": None,
        "prompt": {"base": "base", "tuned": "base"}, "constrained": {"base": False, "tuned": False},
        "checks": [{"name": "improvement", "passed": status == "PASS", "detail": "tuned 0.40 vs base 0.45"},
                   {"name": "collapse", "passed": True, "detail": "fine"}], "vs_arm": None}))


def test_missing_gate_refused_unless_forced(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run `honed gate"):
        read_gate(tmp_path, force=False, **BOUND)
    gate, entry = read_gate(tmp_path, force=True, **BOUND)
    assert gate is None and entry["forced"] is True and entry["overrode"] == "no gate run"


def test_failed_gate_refused_with_its_failed_checks_and_force_recorded(tmp_path: Path) -> None:
    _gate(tmp_path, "FAIL")
    with pytest.raises(UserError) as exc:
        read_gate(tmp_path, force=False, **BOUND)
    assert "gate FAILED" in str(exc.value) and "improvement: tuned 0.40 vs base 0.45" in str(exc.value)
    assert "collapse" not in str(exc.value)
    _, entry = read_gate(tmp_path, force=True, **BOUND)
    assert entry == {**entry, "forced": True, "overrode": "FAIL", "failed_checks": ["improvement"]}


def test_passed_gate_is_not_forced(tmp_path: Path) -> None:
    _gate(tmp_path, "PASS")
    _, entry = read_gate(tmp_path, force=True, **BOUND)
    assert entry["forced"] is False and "overrode" not in entry and entry["threshold"] == 0.5

"""`honed demo`'s report: every figure on the page comes from the stage documents it was given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.demo import DemoResult, find_example, report_html
from honed.errors import UserError
from honed.evaluate.document import EvalDocument
from honed.train.summary import TuneSummary
from tests.unit.planted_docs import eval_document, tune_summary

pytestmark = pytest.mark.unit


def _result(tmp_path: Path, ladder: dict | None) -> DemoResult:
    gate = {"status": "PASS", "task": "support-triage", "primary_metric": "macro_f1", "n_items": 40,
            "base": {"model": "smollm2-135m", "model_sha256": "b179c9523d0e" + "0" * 52, "value": 0.033,
                     "ci": [0.0, 0.08]},
            "tuned": {"value": 0.512, "ci": [0.39, 0.63]},
            "checks": [{"name": "improvement", "passed": True, "detail": "+0.479 (CI [0.33, 0.61])"},
                       {"name": "collapse", "passed": True, "detail": "top answer 31%"}]}
    base = EvalDocument.model_validate(eval_document(run_id="20261123-eval", metrics={"macro_f1": 0.018},
                                                     ci={"macro_f1": [0.0, 0.05]}, model={"sha256": None}))
    return DemoResult(base=base, tune=TuneSummary.model_validate(tune_summary()), gate=gate, package=tmp_path / "pkg" if ladder else None, ladder=ladder,
                      report=tmp_path / "report.html", seconds={"tune": 400.0, "gate": 120.0})


def test_report_shows_every_stage(tmp_path: Path) -> None:
    ladder = {"rungs": [{"quant": "F16", "metric": 0.5, "ci": [0.38, 0.62], "eval_run_dir": "/r/f16"},
                        {"quant": "Q4_K_M", "metric": 0.47, "ci": [0.35, 0.6], "eval_run_dir": "/r/q4"}],
              "recommended": "Q4_K_M"}
    curves = {"train": [{"step": 1, "loss": 3.0}], "val": [{"step": 0, "metric": 0.05}, {"step": 8, "metric": 0.5}],
              "best_step": 8}
    page = report_html(_result(tmp_path, ladder), "macro_f1", curves)
    for text in ("0.018", "0.033", "0.512", "[0.390, 0.630]", "tuned Q4_K_M (GGUF, llama.cpp)", "Gate: PASS",
                 "+0.479 (CI [0.33, 0.61])", "Training curves", "b179c9523d0e"):
        assert text in page, text
    assert "<script" in page and "https://" not in page.split("</script>")[-1]  # plotly inlined


def test_report_without_export(tmp_path: Path) -> None:
    r = _result(tmp_path, None)
    r.gate["status"] = "FAIL"
    page = report_html(r, "macro_f1", None)
    assert "Gate: FAIL" in page and "not exported" in page and "Training curves" not in page


def test_find_example_reports_a_missing_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (find_example("classify") / "honed.toml").is_file()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="--task"):
        find_example("no-such-example")


def test_json_figures_come_from_the_stage_documents(tmp_path: Path) -> None:
    from honed.demo import figures

    ladder = {"rungs": [{"quant": "F16", "metric": 0.5, "ci": [0.38, 0.62], "p95_ms": 410.0},
                        {"quant": "Q8_0", "metric": 0.49, "ci": [0.37, 0.61], "p95_ms": 300.0}],
              "recommended": "Q8_0"}
    r = _result(tmp_path, ladder)
    curves = tmp_path / "run" / "curves.json"
    r.tune = TuneSummary.model_validate(tune_summary(
        steps=61, train_seconds=391.0, train_tokens_per_s=64.0, step_tokens_per_s=90.9, prompt="tuned",
        selection={"best_step": 61}, run_id="t1", run_dir=str(curves.parent)))
    r.gate.update(threshold=0.8, min_value=0.8, difference_ci=[0.6, 0.87], constrained={"base": True, "tuned": True})
    tuned_eval = tmp_path / "tuned-eval"  # the tuned side's eval run folder: every metric, with its CI
    tuned_eval.mkdir()
    (tuned_eval / "result.json").write_text(json.dumps(eval_document(
        metrics={"macro_f1": 0.512, "accuracy": 0.55}, ci={"macro_f1": [0.39, 0.63]})))
    r.gate["tuned"]["eval_run_dir"] = str(tuned_eval)
    curves.parent.mkdir()
    curves.write_text(json.dumps({"val": [{"step": 0, "metric": 0.05, "loss": 3.1}, {"step": 9, "metric": 0.6,
                                                                                  "loss": 0.4}]}))
    d = figures(r, "macro_f1")
    assert d["seconds"] == {"tune": 400.0, "gate": 120.0, "total": 520.0}
    assert d["base_gguf"]["value"] == 0.018 and d["base_gguf"]["metrics"] == {"macro_f1": {"value": 0.018,
                                                                                          "ci": [0.0, 0.05]}}
    assert d["base"] == {"value": 0.033, "ci": [0.0, 0.08], "metrics": {}}  # no eval run folder: nothing invented
    assert d["tuned"] == {"value": 0.512, "ci": [0.39, 0.63], "metrics": {
        "macro_f1": {"value": 0.512, "ci": [0.39, 0.63]}, "accuracy": {"value": 0.55, "ci": None}}}
    assert d["difference_ci"] == [0.6, 0.87] and d["constrained"] == {"base": True, "tuned": True}
    assert d["training"]["curve"] == [{"step": 0, "metric": 0.05, "loss": 3.1}, {"step": 9, "metric": 0.6, "loss": 0.4}]
    assert d["shipped"] == {"quant": "Q8_0", "value": 0.49, "ci": [0.37, 0.61]} and d["recommended"] == "Q8_0"
    assert d["gate"] == {"status": "PASS", "threshold": 0.8, "min_value": 0.8, "failed": []}
    assert d["training"]["step_tokens_per_s"] == 90.9 and d["training"]["best_step"] == 61
    assert d["package"] == str(tmp_path / "pkg")

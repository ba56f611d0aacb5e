"""benchmarks.md and the run-folder logic behind it, on eval run folders with planted per-item records.

Planted records pin exact situations (an item fixed, one broken, a cut answer) so each number in the document
can be checked against a hand count; the real model's runs are in tests/integration/test_export_docs.py.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from honed.evaluate import scorers
from honed.evaluate.document import read_eval_run
from honed.evaluate.scoring import ItemRecord
from honed.exporting.docs import render_benchmarks
from honed.exporting.docs import runs as dr
from honed.exporting.docs.usage import tune_toml
from honed.exporting.package import Acceptance, Manifest, Rung
from honed.task.data import load_items
from honed.task.spec import load_task
from tests.conftest import EXAMPLES
from tests.unit.planted_docs import eval_document

pytestmark = pytest.mark.unit


def rec(id: str, expected: Any, answer: Any, correct: bool, cause: str | None = None, text: str | None = None,
        **kw: Any) -> ItemRecord:
    return ItemRecord(id=id, repeat=0, expected=expected, answer=answer, correct=correct,
                      cause=cause if cause or correct else "wrong_answer",
                      text=text if text is not None else json.dumps(answer) if answer is not None else "",
                      finish_reason="stop", latency_s=0.1, ttft_s=0.05, prompt_tokens=100, completion_tokens=3,
                      cached=False, **kw)


def write_run(path: Path, records: list[ItemRecord], backend: str = "transformers") -> Path:
    path.mkdir(parents=True)
    (path / "items.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))
    (path / "result.json").write_text(json.dumps(eval_document(run_id=path.name, model={"backend": backend})))
    return path


def package_task(root: Path, kind: str) -> Path:
    (root / "task" / "data").mkdir(parents=True)
    shutil.copy(EXAMPLES / kind / "honed.toml", root / "task" / "honed.toml")
    shutil.copy(EXAMPLES / kind / "data" / "test.jsonl", root / "task" / "data" / "test.jsonl")
    for extra in (EXAMPLES / kind).glob("*.json"):
        shutil.copy(extra, root / "task" / extra.name)
    return root


def gate_for(base: Path, tuned: Path, metric: str, n: int) -> dict[str, Any]:
    return {"status": "PASS", "created": "2026-11-23T10:00:00", "run_id": "tune-x", "task": "t", "task_dir": "/t",
            "primary_metric": metric, "split": "test", "n_items": n,
            "base": {"model": "smollm2-135m", "model_sha256": "a" * 64, "value": 0.25, "ci": [0.1, 0.4],
                     "p95_ms": 812.25, "eval_run_dir": str(base)},
            "tuned": {"model": "smollm2-135m", "adapter": "best", "value": 0.75, "ci": [0.5, 0.9], "p95_ms": 845.5,
                      "eval_run_dir": str(tuned)},
            "relative_improvement": 2.0, "relative_improvement_ci": [0.8, 4.1], "difference": 0.5,
            "difference_ci": [0.25, 0.75], "p_value": 0.0123, "min_relative_improvement": 0.1, "threshold": 0.275,
            "checks": [{"name": "improvement", "passed": True, "detail": "+200% ≥ 10%"},
                       {"name": "latency", "passed": False, "detail": "p95 845.5 ms > 800 ms"}], "vs_arm": None}


LADDER = {"rungs": [{"quant": "F16", "file": "t-smollm2-v1-F16.gguf", "metric": 0.75, "ci": [0.5, 0.9],
                     "p50_ms": 210.5, "p95_ms": 300.25, "peak_memory_mb": 640.0, "cost_per_1k": 0.0042,
                     "agreement_with_merged": 1.0, "eval_run_dir": "/runs/e-f16"},
                    {"quant": "Q4_K_M", "file": "t-smollm2-v1-Q4_K_M.gguf", "metric": 0.7375, "ci": [0.48, 0.88],
                     "p50_ms": 120.0, "p95_ms": 180.75, "peak_memory_mb": 300.0, "cost_per_1k": 0.0021,
                     "agreement_with_merged": 0.9375, "eval_run_dir": "/runs/e-q4"}],
          "recommended": "Q4_K_M", "why": "Q4_K_M scores 0.738 vs F16 0.750: within 0.02.", "tolerance": 0.02}


def manifest(kind: str, metric: str) -> Manifest:
    return Manifest(task="t", kind=kind, version="v1", base_model={"name": "smollm2-135m"},
                    rungs=[Rung(quant=r["quant"], file=r["file"], metrics=r) for r in LADDER["rungs"]],
                    recommended="Q4_K_M", acceptance=Acceptance(primary_metric=metric, min_value=0.275))


def test_classify_benchmarks_numbers_match_their_sources(tmp_path: Path) -> None:
    root = package_task(tmp_path / "pkg", "classify")
    ids = [i.id for i in load_items(load_task(root / "task"), "test")][:8]
    exp = [i.expected for i in load_items(load_task(root / "task"), "test")][:8]
    other = {e: ("billing" if e != "billing" else "shipping") for e in set(exp)}
    # base: 2 right (items 0, 1); tuned: fixes 2..6, breaks item 1, item 7 cut at max_tokens in both
    base = [rec(ids[0], exp[0], exp[0], True), rec(ids[1], exp[1], exp[1], True)]
    base += [rec(i, e, other[e], False) for i, e in zip(ids[2:7], exp[2:7], strict=True)]
    base.append(rec(ids[7], exp[7], None, False, "cut_at_max_tokens", "Sure! Let me think about this messa"))
    tuned = [rec(ids[0], exp[0], exp[0], True), rec(ids[1], exp[1], other[exp[1]], False)]
    tuned += [rec(i, e, e, True) for i, e in zip(ids[2:7], exp[2:7], strict=True)]
    tuned.append(rec(ids[7], exp[7], None, False, "cut_at_max_tokens", "The category is probably, well"))
    b, t = write_run(tmp_path / "run-base", base), write_run(tmp_path / "run-tuned", tuned)
    gate = gate_for(b, t, "macro_f1", 8)
    md = render_benchmarks(root, manifest("classify", "macro_f1"), gate, LADDER)

    for heading in ("# Benchmarks: t v1", "## Base vs tuned (gate: PASS)", "## Quantization ladder",
                    "## Confusion matrix", "## Before and after", "## Failures it still makes"):
        assert heading in md
    # gate.json numbers, written the documents' one way
    assert "| base `smollm2-135m` | 0.250 | [0.100, 0.400] | 812.2 | `run-base` |" in md  # 812.25: half to even
    assert "| tuned `smollm2-135m` + adapter | 0.750 | [0.500, 0.900] | 845.5 |" in md
    assert "paired 95% CI [0.250, 0.750], p = 0.0123" in md and "≥ 0.275" in md
    assert "| latency | **no** | p95 845.5 ms > 800 ms |" in md
    # the ladder row and the recommendation with the tolerance
    assert ("| Q4_K_M | `t-smollm2-v1-Q4_K_M.gguf` | 0.738 | [0.480, 0.880] | 120.0 | 180.8 | 300 | 0.0021 | 0.938 "
            "| `e-q4` |") in md
    assert "**Recommended: Q4_K_M** — the smallest quantization whose macro_f1 stays within the gate's tolerance " \
           "(0.020) of F16" in md
    # the confusion matrix is the scorer's over the tuned records, row by row
    conf = scorers.classification_report([r.expected for r in tuned], [dr.valid_answer(r) for r in tuned],
                                         labels=load_task(root / "task").labels)["confusion"]
    tuned_block = md.split("### tuned")[1].split("### base")[0]
    for label, row in zip(conf["labels"], conf["matrix"], strict=True):
        assert f"| {label} | " + " | ".join(map(str, row)) + " |" in tuned_block
    assert "INVALID" in conf["columns"]
    # before/after: the five fixed items, then the broken one; nothing unchanged is shown
    shown = re.findall(r"### \d\. `([^`]+)` — (\w+)", md)
    assert shown == [(i, "fixed") for i in ids[2:7]] + [(ids[1], "broken")]
    # failures by cause, counted from the tuned run
    assert "2 of 8 test items are still wrong" in md
    assert "### cut_at_max_tokens: 1" in md and "### wrong_answer: 1" in md
    assert f"- expected `{exp[1]}`, answered `{other[exp[1]]}`: 1×" in md


def test_pick_confusion_has_outcome_columns(tmp_path: Path) -> None:
    root = package_task(tmp_path / "pkg", "pick")
    items = load_items(load_task(root / "task"), "test")[:4]
    base = [rec(i.id, i.expected, "NONE" if i.expected != "NONE" else 1, False) for i in items]
    tuned = [rec(i.id, i.expected, i.expected, True) for i in items[:3]]
    tuned.append(rec(items[3].id, items[3].expected, None, False, "unparseable", "I think the careers link"))
    b, t = write_run(tmp_path / "b", base), write_run(tmp_path / "t", tuned)
    md = render_benchmarks(root, manifest("pick", "macro_f1"), gate_for(b, t, "macro_f1", 4), LADDER)
    assert "| true ↓ / answered → | NONE | PICK | WRONG_PICK | INVALID |" in md
    assert "WRONG_PICK (the right number" not in md and "WRONG_PICK, INVALID (no answer)" in md
    assert "### unparseable: 1" in md and "I think the careers link" in md
    assert len(re.findall(r"### \d\. `[^`]+` — fixed", md)) == 3


def test_extract_and_generate_say_what_replaces_the_confusion_matrix(tmp_path: Path) -> None:
    root = package_task(tmp_path / "x", "extract")
    items = load_items(load_task(root / "task"), "test")[:3]
    wrong = {"entities": [], "relationships": []}
    base = [rec(i.id, i.expected, wrong, False) for i in items]
    tuned = [rec(i.id, i.expected, i.expected, True) for i in items[:2]] + [
        rec(items[2].id, items[2].expected, None, False, "unparseable", '{"entities": [', valid_json=False)]
    b, t = write_run(tmp_path / "xb", base), write_run(tmp_path / "xt", tuned)
    md = render_benchmarks(root, manifest("extract", "field_f1"), gate_for(b, t, "field_f1", 3), LADDER)
    assert "## Confusion matrix" not in md
    assert "No confusion matrix for a `extract` task" in md and "per-field" in md
    assert "| valid_json_rate | 1.000 | 0.667 |" in md
    ex = load_task(root / "task").spec.extract
    per_field = scorers.extract_report([r.expected for r in tuned], [r.answer for r in tuned],
                                       [r.valid_json for r in tuned], [r.schema_valid for r in tuned],
                                       entities_key=ex.entities_key,
                                       relationships_key=ex.relationships_key)["per_field"]
    f = per_field["entities"]
    assert f"| `entities` | 0.000 | {f['f1']:.3f} | {f['precision']:.3f} | {f['recall']:.3f} | {f['support']} |" in md
    assert f"- expected: `{json.dumps(items[1].expected)}`" in md  # JSON, as the model must write it
    from honed.exporting.docs.usage import _does_section

    does = "\n".join(_does_section(load_task(root / "task"), manifest("extract", "record_f1")))
    assert "The task's own bar is `record_f1` ≥ 0.720 (`[acceptance] min_value`)" in does
    assert ("each checked by the gate on the tuned model's test answers and by `honed monitor` on the anchors: "
            "`entity_f1` ≥ 0.800, `relationship_f1` ≥ "
            "0.600, `valid_json_rate` ≥ 1.000.") in does  # examples/extract's [acceptance] min_metrics
    # examples/extract's allowed_relationships: the rule, the triples, and what a client without honed gets
    assert "checked against the task's 32 allowed (source type, relation, target type) triples" in does
    assert "- `MANAGES`: team → service, team → datastore, team → infrastructure, team → tool, tool → service" in does
    assert "gets the model's unchecked JSON" in does and "`relationship_unchecked_f1`" in does

    root = package_task(tmp_path / "g", "generate")
    items = load_items(load_task(root / "task"), "test")[:2]
    good = "SEVERITY: HIGH\nCOMPONENT: database\nSUMMARY: The primary database went down."
    base = [rec(i.id, i.expected, "High severity, the database.", False) for i in items]
    tuned = [rec(i.id, i.expected, good, True) for i in items]
    b, t = write_run(tmp_path / "gb", base), write_run(tmp_path / "gt", tuned)
    md = render_benchmarks(root, manifest("generate", "format_pass_rate"),
                           gate_for(b, t, "format_pass_rate", 2), LADDER)
    assert "No confusion matrix for a `generate` task" in md and "format rule" in md
    assert "| severity_value | 0.000 | 1.000 |" in md and "| format_pass_rate | 0.000 | 1.000 |" in md
    assert "None: every test item is right." in md


def test_a_vanished_eval_run_is_a_clear_error(tmp_path: Path) -> None:
    from honed.errors import UserError

    with pytest.raises(UserError, match="items.jsonl: eval run items not found"):
        read_eval_run(tmp_path / "gone")


def test_retrain_toml_is_accepted_by_honed_tune(tmp_path: Path) -> None:
    from honed.train.config import load_config

    resolved = {"model": "smollm2-135m", "method": "lora", "rank": 8, "alpha": 16, "learning_rate": 5e-4,
                "epochs": 8.0, "max_length": None, "target_modules": ["q_proj", "v_proj"], "report_to": [],
                "force": True, "planner_note": "not a TuneConfig key", "packing": False}
    text = tune_toml(resolved)
    path = tmp_path / "tune.toml"
    path.write_text(text)
    cfg = load_config(path)
    assert (cfg.rank, cfg.alpha, cfg.learning_rate, cfg.epochs, cfg.packing) == (8, 16, 5e-4, 8.0, False)
    assert cfg.target_modules == ["q_proj", "v_proj"] and cfg.force is False and "planner_note" not in text


def test_a_gate_without_its_keys_is_named_key_by_key(tmp_path: Path) -> None:
    from honed.errors import UserError

    root = package_task(tmp_path / "pkg", "classify")
    gate = gate_for(tmp_path / "b", tmp_path / "t", "macro_f1", 1)
    del gate["tuned"]["eval_run_dir"], gate["n_items"]
    with pytest.raises(UserError, match=r"gate.json lacks n_items, tuned.eval_run_dir: re-run `honed gate RUN`"):
        render_benchmarks(root, manifest("classify", "macro_f1"), gate, LADDER)


def test_python_literal_of_a_schema_is_python_and_round_trips() -> None:
    import ast

    from honed.exporting.docs.examples import py_literal

    value = {"type": "object", "additionalProperties": False, "default": None, "required": ["a", "b"],
             "properties": {"a": {"type": "string", "description": 'say "hi"\nthen\tgo — ok'}, "n": 1.5},
             "empty": {}, "list": [{"x": True}, []]}
    text = py_literal(value, 1)
    assert "False" in text and "None" in text and "false" not in text
    assert ast.literal_eval(text) == value


def test_limitations_and_hardware_name_their_numbers(tmp_path: Path) -> None:
    from honed.exporting.docs.usage import hardware_section, limitations_section, sampling_section
    from honed.exporting.package import Package

    root = package_task(tmp_path / "pkg", "classify")
    task = load_task(root / "task")
    items = load_items(task, "test")[:9]
    # the shipped rung answers billing for every shipping item and nothing valid for one NONE item
    recs = [rec(i.id, i.expected, "billing", False) if i.expected == "shipping" else
            rec(i.id, i.expected, None, False, "unparseable", "hmm") if i.expected == "NONE" else
            rec(i.id, i.expected, i.expected, True) for i in items]
    n_ship = sum(i.expected == "shipping" for i in items)
    assert n_ship and any(i.expected == "NONE" for i in items)
    run = write_run(tmp_path / "e-q4", recs, backend="llamacpp")
    ladder = json.loads(json.dumps(LADDER))
    ladder["rungs"][1]["eval_run_dir"] = str(run)
    m = Manifest(task="t", kind="classify", version="v1", base_model={"name": "smollm2-135m"},
                 rungs=[Rung(quant=r["quant"], file=r["file"], metrics=r) for r in ladder["rungs"]],
                 recommended="Q4_K_M", acceptance=Acceptance(primary_metric="macro_f1", min_value=0.275),
                 gate={**gate_for(tmp_path / "b", tmp_path / "t", "macro_f1", 40), "forced": False})
    text = "\n".join(limitations_section(Package(root, m), m, task))
    assert "about 0.750 (95% CI [0.500, 0.900], 40 test items; gate.json" in text
    assert "only 40 items" in text and "The shipped Q4_K_M rung scored 0.738 (95% CI [0.480, 0.880]" in text
    assert f"It answers `billing` on {n_ship} of {n_ship} `shipping` items (the Q4_K_M rung's eval run `e-q4`)" \
        in text
    assert "It gives no valid answer on 1 of" in text and "unparseable: 1 of 9 test items" in text
    assert "exported" not in text  # the gate passed: no warning
    hw = "\n".join(hardware_section(Package(root, m), m))
    assert "peaked at 300 MB" in hw and "| Q4_K_M (recommended) | `t-smollm2-v1-Q4_K_M.gguf` | n/a | 300 | 120.0 | " \
        "180.8 |" in hw
    sampling = "\n".join(sampling_section(task, chat=True))
    assert "| temperature | 0.00 | greedy" in sampling and "| max_tokens | 32 |" in sampling
    assert "max_tokens: the classify default" in sampling

"""`honed monitor` on a real package built by hand from the contract (the tiny model's F16 GGUF as its one rung,
tests/tiny_model.py; examples/classify as its task), against request logs whose answers that model gave through
llama.cpp. Monitoring is mechanics: anchors are judged against what the rung answered at export, drift against
the eval set's inputs, so a model that knows the task adds minutes and no check.

Planted: a log of in-distribution inputs (no input-drift flag), a log of restaurant-booking messages (input
drift flagged), a package whose anchors the model gets wrong (anchor FAIL, exit 1), a Q8_0 re-quantization as
a shadow candidate, and a log with known volume, tokens and escalations for the economics by hand.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from honed.backends import open_backend
from honed.backends.models import file_sha256
from honed.cost.model import load_hardware, load_prices
from honed.data.logs import LogRecord, append_record
from honed.exporting.package import Acceptance, Anchor, Manifest, Rung, write_anchors, write_manifest
from honed.monitor import MonitorConfig, monitor
from honed.monitor.economics import DAYS_PER_MONTH
from honed.monitor.models import answer_items
from honed.task.data import Item, load_items
from honed.task.spec import load_task
from tests.conftest import EXAMPLES, REPO

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, tzinfo=UTC)
GGUF_NAME = "support-triage-tiny-smollm2-v1-F16.gguf"


def constrained(toml: str) -> str:
    """The task file with `[generation] constrained = true` (the example may already have the table)."""
    if "[generation]" in toml:
        lines = [ln for ln in toml.splitlines() if not ln.startswith("constrained")]
        out = "\n".join(lines).replace("[generation]", "[generation]\nconstrained = true", 1) + "\n"
    else:
        out = toml + "\n[generation]\nconstrained = true\n"
    assert "constrained = true" in out
    return out


def build_package(root: Path, gguf: Path, *, min_value: float, anchors: list[Anchor], bars: str = "") -> Path:
    """A package by the contract: the GGUF hard-linked as the one rung, the task copied, anchors, manifest;
    `bars`: the task's `[acceptance] min_metrics` (TOML inline table)."""
    (root / "task" / "data").mkdir(parents=True)
    toml = (EXAMPLES / "classify" / "honed.toml").read_text()
    if bars:
        assert "[acceptance]\n" in toml
        toml = toml.replace("[acceptance]\n", f"[acceptance]\nmin_metrics = {bars}\n", 1)
    # decode only the answer space, as a served classifier does; short and valid answers keep the test fast
    (root / "task" / "honed.toml").write_text(constrained(toml))
    shutil.copy(EXAMPLES / "classify" / "data" / "test.jsonl", root / "task" / "data" / "test.jsonl")
    try:
        os.link(gguf, root / GGUF_NAME)
    except OSError:
        shutil.copy(gguf, root / GGUF_NAME)
    write_anchors(root, anchors)
    write_manifest(root, Manifest(
        task="support-triage", kind="classify", version="v1",
        base_model={"name": "tiny-smollm2", "sha256": file_sha256(gguf)},
        rungs=[Rung(quant="F16", file=GGUF_NAME, metrics={})], recommended="F16",
        acceptance=Acceptance(primary_metric="macro_f1", min_value=min_value), gate={"status": "PASS"}))
    return root


def log_from(task_dir: Path, gguf: Path, texts: list[str], path: Path, *, escalate_every: int = 10) -> Path:
    """A request log of the model's answers to `texts`, one request every 20 minutes; every
    `escalate_every`-th request is logged as escalated to a cloud fallback."""
    task = load_task(task_dir)
    items = [Item(id=str(i), inputs={"text": t}) for i, t in enumerate(texts)]
    with open_backend("llamacpp", str(gguf)) as be:
        recs = answer_items(task, be, items)
    for i, (item, rec) in enumerate(zip(items, recs, strict=True)):
        esc = i % escalate_every == escalate_every - 1
        append_record(path, LogRecord.new(
            task=task.name, inputs=item.inputs, output=rec.text, answer=rec.answer,
            layer="fallback" if esc else "tuned", model="gpt-4o-mini" if esc else "tiny-smollm2",
            latency_ms=rec.latency_s * 1000, timestamp=T0 + timedelta(minutes=20 * i),
            signals={"escalated": esc}))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("monitor")
    gguf = tiny_model.gguf
    task_dir = root / "task-src"
    shutil.copytree(EXAMPLES / "classify", task_dir)
    (task_dir / "honed.toml").write_text(constrained((task_dir / "honed.toml").read_text()))
    task = load_task(task_dir)
    test_items = load_items(task, "test")[:8]
    with open_backend("llamacpp", str(gguf)) as be:
        said = answer_items(task, be, test_items)
    # anchors as export writes them: expected = the reference label, answer = what the rung said
    truth = [Anchor(i.id, i.inputs, i.expected, r.answer) for i, r in zip(test_items, said, strict=True)]
    # a package whose anchors expect what the model answers: passes any threshold
    agreeing = [Anchor(a.id, a.inputs, a.answer, a.answer) for a in truth if a.answer is not None]
    val = [json.loads(line)["text"] for line in (task_dir / "data" / "val.jsonl").read_text().splitlines()]
    rest = [r["userInput"]["text"] for r in json.loads((REPO.parent / "shared" / "data" / "restaurant8k" / "test.json").read_text()) if len(r["userInput"]["text"]) > 25]
    return {
        "root": root, "gguf": gguf, "task_dir": task_dir, "truth": truth, "model_said": said,
        "good": build_package(root / "pkg-good", gguf, min_value=0.9, anchors=agreeing),
        "bad": build_package(root / "pkg-bad", gguf, min_value=0.9, anchors=truth, bars="{ accuracy = 0.95 }"),
        "log_in": log_from(task_dir, gguf, val[:24], root / "in.jsonl"),
        "log_shifted": log_from(task_dir, gguf, rest[:24], root / "shifted.jsonl"),
    }


def _check(report: Any, name: str) -> dict[str, Any]:
    return next(c for c in report.doc["drift"] if c["name"] == name)


def test_in_distribution_log_raises_no_input_drift(world: dict[str, Any], tmp_path: Path) -> None:
    report = monitor(world["log_in"], world["good"], out=tmp_path / "r")
    dist = _check(report, "input_distance")
    assert dist["skipped"] is None and not dist["flagged"], dist["detail"]
    assert dist["statistic"]["n_log"] == 24 and dist["statistic"]["n_eval"] == 40
    assert report.doc["anchors"]["status"] == "PASS" and report.doc["anchors"]["value"] == 1.0
    assert report.doc["anchors"]["bars"] == []  # the example states no min_metrics
    assert report.doc["anchors"]["changed_since_export"] == []  # same model, same greedy answers
    esc = _check(report, "escalation")
    assert esc["statistic"]["escalated"] == 2 and not esc["flagged"]
    for name in ("report.md", "report.html", "report.json"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["task"] == "support-triage"
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Input distance from the eval set" in html and "<script src=" not in html  # plotly inlined


def test_shifted_inputs_are_flagged(world: dict[str, Any], tmp_path: Path) -> None:
    report = monitor(world["log_shifted"], world["good"], out=tmp_path / "r")
    dist = _check(report, "input_distance")
    assert dist["flagged"] and dist["statistic"]["centroid_flagged"], dist["detail"]
    assert dist["statistic"]["centroid_distance"] > 0.25
    assert report.flagged and any(f.startswith("drift: input_distance") for f in report.flags)
    assert "input_distance | **FLAGGED**" in (tmp_path / "r" / "report.md").read_text()


def test_failing_anchors_exit_1(world: dict[str, Any], tmp_path: Path) -> None:
    from honed.cli import _register, app

    _register()
    res = CliRunner().invoke(app, ["monitor", str(world["log_in"]), "--package", str(world["bad"]),
                                   "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):])  # stderr may carry llama.cpp notes
    a = doc["anchors"]
    n_right = sum(t.answer == t.expected for t in world["truth"])
    assert a["status"] == "FAIL" and a["n"] == 8 and a["n_correct"] == n_right and a["value"] < 0.9
    assert doc["flags"][0].startswith("anchors FAIL: macro_f1")
    # the task's other bar is re-checked as the gate checked it: accuracy on the anchors the model got right
    [bar] = a["bars"]
    assert bar["metric"] == "accuracy" and bar["value"] == pytest.approx(n_right / 8) and bar["bar"] == 0.95
    assert bar["passed"] is False and f"anchors FAIL: accuracy {n_right / 8:.3f} < the task's bar 0.950" in doc["flags"]
    assert "vs the task's bar 0.950: FAIL" in (tmp_path / "r" / "report.md").read_text()


def test_shadow_comparison_with_a_q8_requantization(world: dict[str, Any], tmp_path: Path) -> None:
    from honed.exporting.quantize import quantize

    q8 = quantize(str(world["gguf"]), ["Q8_0"], tmp_path / "q8")[0].path
    cfg = MonitorConfig(shadow_sample=8)
    report = monitor(world["log_in"], world["good"], candidate=str(q8), out=tmp_path / "r", config=cfg)
    s = report.doc["shadow"]
    assert s["n"] == 8 and s["models"]["candidate"]["sha256"] == file_sha256(q8)
    assert s["models"]["incumbent"]["sha256"] == file_sha256(world["gguf"])
    agree = sum(i["agree"] for i in s["items"])
    assert s["agreement"]["k"] == agree and s["agreement"]["rate"] == agree / 8
    lo, hi = s["agreement"]["ci"]
    assert lo <= agree / 8 <= hi
    v = s["validity"]
    # the task decodes constrained: both models' answers are always valid, no pair is discordant, and exact
    # McNemar on validity is 1.0
    assert v["incumbent"]["n"] == v["candidate"]["n"] == 8
    assert v["incumbent"]["k"] == v["candidate"]["k"] == 8
    assert (v["mcnemar"]["incumbent_only"], v["mcnemar"]["candidate_only"], v["mcnemar"]["p_value"]) == (0, 0, 1.0)
    assert s["correctness"]["n"] == 0 and "no logged record carries a trusted label" in s["correctness"]["note"]
    assert "## Shadow comparison" in (tmp_path / "r" / "report.md").read_text()


def test_economics_equal_a_hand_computation(world: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "econ.jsonl"
    texts = [json.loads(line)["text"] for line in (world["task_dir"] / "data" / "train.jsonl").read_text()
             .splitlines()[:20]]
    # 20 requests over exactly 2 days; 5 escalated; 300 ms locally; token counts logged by the server
    for i, text in enumerate(texts):
        esc = i % 4 == 0
        append_record(log, LogRecord.new(
            task="support-triage", inputs={"text": text}, output="billing", answer="billing",
            layer="fallback" if esc else "tuned", model="claude-haiku-4-5" if esc else "smollm2-135m",
            latency_ms=900.0 if esc else 300.0, timestamp=T0 + timedelta(days=2) * i / 19,
            signals={"escalated": esc, "prompt_tokens": 150 + i, "completion_tokens": 2}))
    report = monitor(log, world["good"], out=tmp_path / "r",
                     config=MonitorConfig(hardware="rtx-4060"))
    e = report.doc["economics"]
    hw, _ = load_hardware("rtx-4060")
    price = {p.name: p for p in load_prices()[0]}["claude-haiku-4-5"]  # the fallback's own model is priced
    volume = 20 / 2.0
    p_tok = sum(150 + i for i in range(20)) / 20
    per_request = (p_tok * price.input_per_mtok + 2 * price.output_per_mtok) / 1e6
    all_cloud = volume * DAYS_PER_MONTH * per_request
    fallback = 5 / 20 * volume * DAYS_PER_MONTH * per_request
    fixed = 1100 / (36 * 30.44) * DAYS_PER_MONTH
    power = volume * 0.3 / 3600 * (250 / 1000 * 0.30) * DAYS_PER_MONTH
    assert e["cloud"]["model"] == "claude-haiku-4-5" and e["traffic"]["requests_per_day"] == pytest.approx(volume)
    assert e["traffic"]["escalation_rate"] == 0.25 and e["traffic"]["local_seconds"] == pytest.approx(0.3)
    assert e["all_cloud"] == pytest.approx(all_cloud)
    assert e["cloud_fallback"] == pytest.approx(fallback)
    assert e["local"]["fixed"] == pytest.approx(fixed) and e["local"]["power"] == pytest.approx(power)
    assert e["hybrid"] == pytest.approx(fixed + power + fallback)
    assert e["saving"] == pytest.approx(all_cloud - (fixed + power + fallback))
    rows = {r["component"]: r["monthly_usd"] for r in e["rows"]}
    assert rows["Hybrid total"] == pytest.approx(fixed + power + fallback)
    assert "prices as of 2026-11" in next(r["basis"] for r in e["rows"] if r["component"] == "All-cloud")

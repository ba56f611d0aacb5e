"""`honed eval` as a user runs it: a real subprocess, real files, llama.cpp on the tiny model's GGUF
(tests/tiny_model.py: SmolLM2's tokenizer and chat template, random weights) for every kind's metrics and run
folder, which need no model that knows the answers. A base model without a chat template is the real Gemma 3
270M base; the resume after SIGKILL needs SmolLM2's answers of a steady length (see that test). `honed compare`
reads two tiny-model runs, constrained, one on the task's full prompt and one on its short tuned prompt: labels
that differ item by item both ways."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLASSIFY_TOML, EXAMPLES, write_task
from tests.conftest import honed_cli as honed

pytestmark = pytest.mark.integration

KIND_METRICS = {
    "classify": ["accuracy", "macro_f1", "per_class", "confusion"],
    "pick": ["false_pick", "wrong_pick", "false_none"],
    "extract": ["valid_json_rate", "schema_valid_rate", "field_f1", "entity_f1", "relationship_f1"],
    "generate": ["format_pass_rate", "per_rule", "keyword_hit_rate"],
}


@pytest.mark.parametrize("kind", ["classify", "pick", "extract", "generate"])
def test_eval_each_example(kind: str, tmp_path: Path, honed_home: Path, tiny_model: Any) -> None:
    out = tmp_path / "result.json"
    # random weights write until max_tokens: 32 keeps extract's JSON grammar (~40 ms a token) to seconds
    proc = honed("eval", str(EXAMPLES / kind), "--model", str(tiny_model.gguf), "--limit", "6", "--max-tokens", "32",
                 "--json", str(out), home=honed_home)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    for key in ("task", "model", "n_items", "metrics", "ci", "latency_ms", "ttft_ms", "tokens_per_s", "failures"):
        assert key in doc
    assert doc["n_items"] == 6 and doc["kind"] == kind
    assert len(doc["model"]["sha256"]) == 64 and doc["model"]["path"].endswith(".gguf")
    for key in ("accuracy", "macro_f1", "per_class", "confusion", *KIND_METRICS[kind]):
        assert key in doc["metrics"], key
    assert doc["latency_ms"]["p50"] > 0 and doc["latency_ms"]["p95"] >= doc["latency_ms"]["p50"]
    assert doc["ttft_ms"]["p50"] > 0
    assert sum(doc["failures"].values()) == round((1 - doc["metrics"]["accuracy"]) * 6)
    # the kind's own metrics are printed, not only written
    printed = proc.stdout
    shown = {"classify": "macro_f1", "pick": "false_pick", "extract": "field_f1", "generate": "format_pass_rate"}
    assert shown[kind] in printed
    run_dir = next((honed_home / "runs").iterdir())
    assert {"result.json", "items.jsonl", "manifest.json", "summary.md", "task.json"} <= {
        p.name for p in run_dir.iterdir()}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["sha256"] == doc["model"]["sha256"]
    assert len(manifest["task"]["sha256"]) == 64 and len(manifest["data"]["items_sha256"]) == 64


def _count_responses(home: Path) -> int:
    db = home / "honed.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_then_rerun_gives_identical_metrics(tmp_path: Path, honed_home: Path) -> None:
    """SmolLM2, whose constrained answers each take long enough for the kill to land between the 8th and the
    last; the tiny model's answers are either a few tokens (gone before a kill lands) or, free, 160 tokens of
    per-token overhead each (6 minutes on a busy machine)."""
    n = 24
    args = ["eval", str(EXAMPLES / "classify"), "--model", "smollm2-135m", "--limit", str(n)]
    env = {**os.environ, "HONED_HOME": str(honed_home)}
    proc = subprocess.Popen([sys.executable, "-m", "honed", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _count_responses(honed_home) < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: raise --limit"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _count_responses(honed_home)
    assert 8 <= done_before < n

    resumed = honed(*args, "--json", str(tmp_path / "resumed.json"), home=honed_home)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads((tmp_path / "resumed.json").read_text())
    assert doc["cache"]["hits"] >= done_before and doc["cache"]["misses"] == n - doc["cache"]["hits"]

    fresh_home = tmp_path / "fresh"
    fresh = honed(*args, "--json", str(tmp_path / "fresh.json"), home=fresh_home)
    assert fresh.returncode == 0, fresh.stderr
    ref = json.loads((tmp_path / "fresh.json").read_text())
    assert ref["cache"]["hits"] == 0
    for key in ("metrics", "ci", "failures", "n_items"):
        assert doc[key] == ref[key], key

    again = honed(*args, "--json", str(tmp_path / "again.json"), home=honed_home)
    assert again.returncode == 0, again.stderr
    second = json.loads((tmp_path / "again.json").read_text())
    assert second["cache"]["hits"] == n
    for key in ("metrics", "ci", "failures", "latency_ms", "ttft_ms", "tokens_per_s"):
        assert second[key] == doc[key], key


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    text = " ".join(proc.stderr.split())
    assert text.startswith("error:"), proc.stderr
    for needle in needles:
        assert needle in text, (needle, text)


def test_user_errors_are_one_line(tmp_path: Path, honed_home: Path) -> None:
    bad = write_task(tmp_path / "bad", CLASSIFY_TOML.replace("[classify]", "[clasify]"))
    _one_line_error(honed("eval", str(bad), home=honed_home), "honed.toml", "clasify: unknown key")

    missing = write_task(tmp_path / "missing", CLASSIFY_TOML)
    _one_line_error(honed("eval", str(missing), home=honed_home), "test.jsonl", "not found")

    broken = write_task(tmp_path / "broken", CLASSIFY_TOML)
    (broken / "test.jsonl").write_text('{"id": "a", "text": "x", "expected": "billing"}\nnot json\n')
    _one_line_error(honed("eval", str(broken), home=honed_home), "test.jsonl:2", "not valid JSON")

    _one_line_error(honed("eval", str(EXAMPLES / "classify"), "--model", "llama-9000", home=honed_home),
                    "unknown model 'llama-9000'", "honed models")
    _one_line_error(honed("eval", str(EXAMPLES / "classify"), "--model", str(tmp_path / "x.gguf"),
                          home=honed_home), "not found")
    _one_line_error(honed("compare", "nope-a", "nope-b", home=honed_home), "run 'nope-a' not found")


def test_compare_two_runs(tmp_path: Path, honed_home: Path, tiny_model: Any) -> None:
    common = ["eval", str(EXAMPLES / "classify"), "--model", str(tiny_model.gguf), "--limit", "24", "--constrained"]
    a = honed(*common, "--prompt", "base", "--json", str(tmp_path / "a.json"), home=honed_home)
    b = honed(*common, "--prompt", "tuned", "--json", str(tmp_path / "b.json"), home=honed_home)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ra, rb = (json.loads((tmp_path / f).read_text())["run_id"] for f in ("a.json", "b.json"))
    cmp = honed("compare", ra, rb, "--json", str(tmp_path / "cmp.json"), home=honed_home)
    assert cmp.returncode == 0, cmp.stderr
    assert "McNemar" in cmp.stdout and "paired bootstrap" in cmp.stdout
    doc = json.loads((tmp_path / "cmp.json").read_text())
    assert doc["n_paired"] == 24
    # exact McNemar from the two runs' own item records, against scipy's binomial test
    from scipy.stats import binomtest

    right = [{r["id"]: r["correct"] for r in map(json.loads, (honed_home / "runs" / run / "items.jsonl")
                                                 .read_text().splitlines())} for run in (ra, rb)]
    a_only = sum(right[0][i] and not right[1][i] for i in right[0])
    b_only = sum(right[1][i] and not right[0][i] for i in right[0])
    assert a_only and b_only  # the two prompts' answers differ both ways: McNemar has discordant pairs to count
    mc = doc["accuracy"]["mcnemar"]
    assert (mc["a_only"], mc["b_only"]) == (a_only, b_only)
    want = binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    assert mc["p_value"] == pytest.approx(want)
    assert doc["primary"]["metric"] == "macro_f1"
    lo, hi = doc["primary"]["ci"]
    assert lo <= doc["primary"]["diff"] <= hi
    # constrained decoding can only produce labels: no unparseable answers in either run
    for f in ("a.json", "b.json"):
        assert json.loads((tmp_path / f).read_text())["failures"]["unparseable"] == 0


def test_base_model_without_template_gets_plain_prompt(tmp_path: Path, honed_home: Path) -> None:
    """The real Gemma 3 270M base: a GGUF that really ships no chat template (the tiny model carries SmolLM2's)."""
    out = tmp_path / "g.json"
    proc = honed("eval", str(EXAMPLES / "classify"), "--model", "gemma3-270m", "--limit", "3", "--json", str(out),
                 home=honed_home)
    assert proc.returncode == 0, proc.stderr
    assert "no chat template" in proc.stderr
    doc = json.loads(out.read_text())
    assert doc["model"]["prompt_format"] == "plain_completion"
    assert doc["model"]["details"]["architecture"] == "gemma3"

"""A task that says `constrained = true` is gated and exported constrained, like for like (issue 14).

The gate evaluates base and tuned through transformers and the ladder re-evaluates the merged model through
transformers too, while the GGUF rungs decode under llama.cpp's grammar: every one of them must decode under the
task's answer space, record it per item, and answer only inside it. Before the transformers backend honoured
constraints, the gate and the merged row decoded free while the rungs decoded constrained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ANSWERS = {"billing", "shipping", "account_access", "NONE"}


def _items(run_dir: str | Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (Path(run_dir) / "items.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def constrained_chain(tiny_tuned: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from honed.exporting.export import export
    from honed.gating import gate
    from tests.tiny_model import write_planted_task

    base = tmp_path_factory.mktemp("constrained-chain")
    task_dir = write_planted_task(base / "task", "\n[generation]\nconstrained = true\n")
    run = base / "run"
    shutil.copytree(tiny_tuned["run"], run)
    manifest = run / "manifest.json"
    manifest.write_text(manifest.read_text().replace(json.dumps(str(tiny_tuned["task_dir"])),
                                                     json.dumps(str(task_dir))))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HONED_HOME", str(tiny_tuned["home"]))
        verdict = gate(run)
        pkg = export(run, out=base / "pkg", quants=["Q8_0"], force=verdict.doc["status"] != "PASS")
    return {"gate": verdict, "pkg": pkg}


def test_the_gate_decodes_base_and_tuned_constrained(constrained_chain: dict[str, Any]) -> None:
    doc = constrained_chain["gate"].doc
    assert doc["constrained"] == {"base": True, "tuned": True}
    for side in ("base", "tuned"):
        result = json.loads((Path(doc[side]["eval_run_dir"]) / "result.json").read_text())
        assert result["settings"]["constrained"] is True and result["model"]["backend"] == "transformers"
        items = _items(doc[side]["eval_run_dir"])
        assert len(items) == 24 and all(r["constrained"] for r in items), side
        # the answer space holds every answer, even the random base's: no output is anything but a label
        assert {r["text"] for r in items} <= ANSWERS, side
        assert all(r["cause"] in (None, "wrong_answer") and r["finish_reason"] == "stop" for r in items), side


def test_the_merged_row_and_every_rung_of_the_ladder_decode_constrained(constrained_chain: dict[str, Any]) -> None:
    m = constrained_chain["pkg"].manifest
    merged = m.ladder["merged"]
    items = _items(merged["eval_run_dir"])
    result = json.loads((Path(merged["eval_run_dir"]) / "result.json").read_text())
    assert result["model"]["backend"] == "transformers" and result["settings"]["constrained"] is True
    assert len(items) == 16 and all(r["constrained"] for r in items)
    assert {r["text"] for r in items} <= ANSWERS and all(r["cause"] in (None, "wrong_answer") for r in items)
    assert [r.quant for r in m.rungs] == ["F16", "Q8_0"]
    for rung in m.rungs:
        rows = _items(rung.metrics["eval_run_dir"])
        assert json.loads((Path(rung.metrics["eval_run_dir"]) / "result.json").read_text())["model"][
            "backend"] == "llamacpp"
        assert len(rows) == 24 and all(r["constrained"] for r in rows), rung.quant
        assert {r["text"] for r in rows} <= ANSWERS, rung.quant

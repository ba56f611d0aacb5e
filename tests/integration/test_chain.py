"""The whole loop's mechanics on the tiny model, end to end: tune → gate → export (with its template round trip
and a refused planted wrong stop) → serve the package → monitor its request log → verify the package.

The tiny model (tests/tiny_model.py) learns the planted task in ~500 fast steps (session fixture `tiny_tuned`),
so the gate has a real gain to judge and the served package answers the planted rule; a planted non-improving
adapter (LoRA B zeroed: exactly the base) must FAIL the gate, and export must refuse it unless forced.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from honed.errors import UserError
from honed.exporting.package import check_hashes, load_package
from tests.conftest import honed_cli, start_serve, stop_serve

pytestmark = pytest.mark.integration
CHECKS = ["improvement", "forgetting", "collapse", "latency", "min_value"]
WRONG_STOP = ('FROM ./x.gguf\nTEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n'
              '{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ .Response }}'
              '<|im_end|>\n"""\nSYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging '
              'Face"""\nPARAMETER stop "</s>"\n')


@pytest.fixture(scope="module")
def chain(tiny_tuned: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from honed.exporting.export import export
    from honed.gating import gate

    base = tmp_path_factory.mktemp("chain")
    run = base / "run"
    shutil.copytree(tiny_tuned["run"], run)  # gate.json and the package are written into the run: a copy
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HONED_HOME", str(tiny_tuned["home"]))
        verdict = gate(run)
        wrong = base / "Modelfile.wrong"
        wrong.write_text(WRONG_STOP)
        try:
            export(run, out=base / "pkg", modelfile=wrong)
            planted: Exception | None = None
        except UserError as exc:
            planted = exc
        pkg = export(run, out=base / "pkg")
    return {"run": run, "gate": verdict, "pkg": pkg, "planted": planted, "out": base / "pkg", "base": base,
            "home": tiny_tuned["home"], "summary": tiny_tuned["summary"]}


def test_tune_learned_the_planted_rule(tiny_tuned: dict[str, Any]) -> None:
    summary = tiny_tuned["summary"]
    curves = json.loads((tiny_tuned["run"] / "curves.json").read_text())
    val = [v["metric"] for v in curves["val"]]
    assert curves["val"][0]["step"] == 0 and val[0] == 0.0  # random weights: no label at all
    assert max(val) >= 0.6  # learned
    # the best was kept: the highest val metric, or a near-tie of it with a lower val loss (honed.train.session.beats)
    top = max(curves["val"][1:], key=lambda v: v["metric"])
    best = next(v for v in curves["val"] if v["step"] == summary.selection.best_step)
    assert best is top or (best["metric"] >= top["metric"] - 0.1 and best["loss"] < top["loss"]), (best, top)
    assert summary.status == "complete" and summary.steps == 500


def test_gate_passes_on_the_learned_gain(chain: dict[str, Any]) -> None:
    doc = chain["gate"].doc
    assert doc["status"] == "PASS", [c["detail"] for c in doc["checks"] if not c["passed"]]
    assert [c["name"] for c in doc["checks"]] == CHECKS
    assert doc["base"]["value"] == 0.0 and doc["tuned"]["value"] >= 0.6
    assert doc["difference"] == pytest.approx(doc["tuned"]["value"] - doc["base"]["value"])
    assert doc["difference_ci"][0] > 0 and doc["n_items"] == 24
    assert chain["pkg"].manifest.gate["forced"] is False


def test_package_layout_names_and_hashes(chain: dict[str, Any]) -> None:
    pkg = load_package(chain["out"])
    m = pkg.manifest
    assert [r.quant for r in m.rungs] == ["F16", "Q8_0", "Q4_K_M"]
    for r in m.rungs:
        assert r.file == f"planted-tiny-smollm2-{m.version}-{r.quant}.gguf"
    for rel in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "Modelfile", "usage.md",
                "benchmarks.md", "task/honed.toml", "task/data/test.jsonl", "anchors.jsonl", "ladder.json"):
        assert rel in m.files, rel
    assert check_hashes(pkg) == []
    assert pkg.task().name == "planted" and len(pkg.anchors()) == 16
    assert set(m.hashes) >= {"train_items_sha256", "val_items_sha256", "test_items_sha256", "config_sha256"}
    assert not (chain["out"].parent / ".pkg.partial").exists()  # the work folder is gone after success


def test_every_rung_was_evaluated_through_llama_cpp(chain: dict[str, Any]) -> None:
    m = chain["pkg"].manifest
    rungs = {r.quant: r.metrics for r in m.rungs}
    gate_tuned = chain["gate"].doc["tuned"]["value"]
    for quant, r in rungs.items():
        result = json.loads((Path(r["eval_run_dir"]) / "result.json").read_text())
        assert result["model"]["backend"] == "llamacpp" and result["n_items"] == 24, quant
        assert result["metrics"]["macro_f1"] == pytest.approx(r["metric"])
        assert r["agreement"]["of"] == 16 and r["agreement_with_merged"] == r["agreement"]["same"] / 16
    # F16 is the merged model converted: its test score is the merged model's within a few near-ties of the
    # garbage answers (the items it has not learned); measured 0.793 = the gate's tuned 0.793
    assert rungs["F16"]["metric"] == pytest.approx(gate_tuned, abs=0.1)
    ladder = json.loads((chain["out"] / "ladder.json").read_text())
    assert ladder["recommended"] == m.recommended and m.recommended in ladder["why"]
    best = max(r["metric"] for r in rungs.values())
    assert rungs[m.recommended]["metric"] >= best - ladder["tolerance"] - 1e-9


def test_round_trip_and_modelfile(chain: dict[str, Any]) -> None:
    m = chain["pkg"].manifest
    rt = m.round_trip
    assert rt["passed"] and rt["terminator"] == "<|im_end|>" and len(rt["items"]) == 16
    assert len(rt["ggufs"]) == 3 and rt["modelfile"]["stops"][0] == "<|im_end|>"
    text = (chain["out"] / "Modelfile").read_text()
    assert f"FROM ./{chain['pkg'].gguf().name}\n" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0" in text
    assert "SYSTEM \"\"\"You are a helpful AI assistant named SmolLM" in text  # the template's default system
    # `ollama create` ran exactly where Ollama is on PATH; either way the package says how to run it by hand
    o = m.ollama
    assert o["how"].startswith(f"ollama create {o['name']} -f Modelfile")
    if shutil.which("ollama") is None:
        assert (o["ran"], o["created"], o["reason"]) == (False, False, "ollama is not on PATH")
    else:
        assert o["ran"] is True and o["created"] == (o.get("returncode") == 0)


def test_planted_wrong_stop_token_is_refused_with_the_diff(chain: dict[str, Any]) -> None:
    msg = str(chain["planted"])
    assert "template round trip FAILED" in msg
    assert "lack the training terminator '<|im_end|>'" in msg and "'</s>'" in msg


def test_served_package_answers_as_exported_and_monitor_and_verify_read_it(chain: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    out = chain["out"]
    anchors = chain["pkg"].anchors()
    s = start_serve(tmp_path / "serve", str(out), task=False)
    try:
        served = []
        for a in anchors:
            r = httpx.post(f"{s.url}/v1/tasks/planted", json={"input": a.inputs}, timeout=120)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["layer"] == "primary"  # decoded as the task says (free here), as export answered anchors
            assert body["model_sha256"] == chain["pkg"].manifest.files[chain["pkg"].gguf().name]
            served.append(body["answer"])
    finally:
        stop_serve(s)
    # the server answers as the recommended rung answered at export, and that model learned the planted rule
    assert served == [a.answer for a in anchors]
    n_correct = sum(a.answer == a.expected for a in anchors)
    assert n_correct >= 12, [(a.expected, a.answer) for a in anchors]  # of 16 (the random base: none)

    report = honed_cli("monitor", str(s.log), "--package", str(out), "--json", "--out", str(tmp_path / "mon"),
                       home=chain["home"])
    assert report.returncode in (0, 1), report.stderr
    doc = json.loads(report.stdout)
    assert doc["n_requests"] == 16 and doc["recommended"] == chain["pkg"].manifest.recommended
    assert doc["anchors"]["n"] == 16 and doc["anchors"]["n_correct"] == n_correct
    assert doc["anchors"]["status"] == "PASS" and doc["anchors"]["changed_since_export"] == []
    assert report.returncode == (1 if doc["flags"] else 0)

    ok = honed_cli("verify", str(out), "--json", home=chain["home"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["status"] == "PASS"
    name = chain["pkg"].gguf().name
    flipped = tmp_path / "flipped"
    shutil.copytree(out, flipped, copy_function=shutil.copyfile)
    data = bytearray((flipped / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / name).write_bytes(bytes(data))
    bad = honed_cli("verify", str(flipped), home=chain["home"])
    assert bad.returncode == 1 and name in bad.stdout


def _zero_lora_b(adapter: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = adapter / "adapter_model.safetensors"
    tensors = load_file(str(path))
    save_file({k: (v * 0 if "lora_B" in k else v) for k, v in tensors.items()}, str(path))


def test_non_improving_adapter_fails_the_gate_and_export_refuses_unless_forced(chain: dict[str, Any]) -> None:
    from honed.gating import gate

    bad = chain["base"] / "bad-run"
    shutil.copytree(chain["run"], bad, ignore=shutil.ignore_patterns("gate.json", "package"))
    _zero_lora_b(bad / "best")  # B = 0: the adapter adds nothing, the "tuned" model is the base
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HONED_HOME", str(chain["home"]))
        verdict = gate(bad)
    assert verdict.status == "FAIL" and "improvement" in [c["name"] for c in verdict.failed_checks]
    assert verdict.doc["tuned"]["value"] == verdict.doc["base"]["value"] == 0.0
    cli = ["export", str(bad), "--out", str(chain["base"] / "bad-pkg"), "--quants", ""]
    refused = honed_cli(*cli, home=chain["home"])
    assert refused.returncode == 2 and "the gate FAILED" in refused.stderr and "improvement" in refused.stderr
    assert "Traceback" not in refused.stderr
    forced = honed_cli(*cli, "--force", "--json", home=chain["home"])
    assert forced.returncode == 0, forced.stderr[-2000:]
    manifest = json.loads(forced.stdout)
    assert manifest["gate"]["forced"] is True and manifest["gate"]["overrode"] == "FAIL"
    assert [r["quant"] for r in manifest["rungs"]] == ["F16"]
    assert load_package(chain["base"] / "bad-pkg").manifest.gate["forced"] is True

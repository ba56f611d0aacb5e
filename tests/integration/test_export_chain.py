"""The real chain on SmolLM2 with a tiny budget: tune → gate → export, and export's refusals.

One module-scoped chain (a few CPU minutes idle, far more on a loaded machine): a 40-step LoRA run on the 200
training examples of the support-triage task (its short tuned prompt),
`honed gate` on 16 locked test items, then
- an export with a planted wrong stop token in `--modelfile`: refused with the diff (it leaves the merged
  checkpoint and the GGUFs in the partial folder, which the next export reuses);
- the real export: every rung loads in llama.cpp; F16 answers the anchors like the merged transformers model,
  Q8_0's and Q4_K_M's agreement is measured and reported, not assumed;
- a planted non-improving adapter (LoRA B zeroed: exactly the base): the gate FAILs, export refuses, and
  `honed export --force` records the override in the manifest.
Stage wall times are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from honed.errors import UserError
from honed.export.package import check_hashes, load_package
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIMES: dict[str, float] = {}


def _timed(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
    t0 = time.perf_counter()
    try:
        return fn(*args, **kw)
    finally:
        TIMES[name] = round(time.perf_counter() - t0, 1)
        print(f"[export chain] {name}: {TIMES[name]} s", file=sys.stderr)


def _task(root: Path) -> Path:
    shutil.copytree(EXAMPLES / "classify", root)
    # a 48-example tune is not meant to reach the example's shipping bar (min_value 0.80): this chain checks
    # the mechanics, so the gate judges the relative gain only
    toml = root / "honed.toml"
    toml.write_text("".join(line for line in toml.read_text().splitlines(True) if not line.startswith("min_value")))
    # all 200 training examples: 40 steps are 1.6 epochs of them (on 48, 6.7 epochs overfit the short prompt and
    # raised the general-prompt loss 29-155%, a forgetting FAIL); a step costs the same either way
    for split, n in (("train", 200), ("val", 16), ("test", 16)):
        p = root / "data" / f"{split}.jsonl"
        p.write_text("".join(p.read_text().splitlines(True)[:n]))
    return root


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from honed.export.export import export
    from honed.gate import gate
    from honed.task.spec import load_task
    from honed.train.config import TuneConfig
    from honed.train.sft import tune

    base = tmp_path_factory.mktemp("export-chain")
    mp = pytest.MonkeyPatch()
    mp.setenv("HONED_HOME", str(base / "home"))  # module scope: the autouse per-test home comes too late
    task = load_task(_task(base / "task"))
    summary = _timed("tune", tune, task, TuneConfig(max_steps=40, eval_every=10, max_val_items=16, batch_size=8,
                                                    learning_rate=1e-3, replay_fraction=0.1, force=True))
    run = Path(summary["run_dir"])
    verdict = _timed("gate", gate, run)
    out = base / "pkg"
    wrong = base / "Modelfile.wrong"
    wrong.write_text('FROM ./x.gguf\nTEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n'
                     '{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ .Response }}'
                     '<|im_end|>\n"""\nSYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging '
                     'Face"""\nPARAMETER stop "</s>"\n')
    try:
        # forced only if the gate failed, so a weak tune still lets the export checks below run (and be reported)
        _timed("export with a planted wrong stop (refused)", export, run, out=out, modelfile=wrong,
               force=not verdict.passed)
        planted: Exception | None = None
    except UserError as exc:
        planted = exc
    pkg = _timed("export", export, run, out=out, force=not verdict.passed)
    yield {"run": run, "gate": verdict, "pkg": pkg, "planted": planted, "out": out, "base": base}
    mp.undo()
    print(f"[export chain] stage times: {json.dumps(TIMES)}; export stages: "
          f"{json.dumps(getattr(pkg.manifest, 'stages', {}))}", file=sys.stderr)


def test_gate_passes_the_tuned_run(chain: dict[str, Any]) -> None:
    doc = chain["gate"].doc
    assert doc["status"] == "PASS", [c["detail"] for c in doc["checks"] if not c["passed"]]
    assert chain["pkg"].manifest.gate["forced"] is False


def test_package_layout_names_and_hashes(chain: dict[str, Any]) -> None:
    pkg = load_package(chain["out"])
    m = pkg.manifest
    assert [r.quant for r in m.rungs] == ["F16", "Q8_0", "Q4_K_M"]
    for r in m.rungs:
        assert r.file == f"support-triage-smollm2-135m-{m.version}-{r.quant}.gguf"
        assert (pkg.root / r.file).stat().st_size > 50 * 2**20
    for rel in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "Modelfile", "usage.md",
                "benchmarks.md", "task/honed.toml", "task/data/test.jsonl", "anchors.jsonl", "ladder.json"):
        assert rel in m.files, rel
    assert check_hashes(pkg) == []
    assert pkg.task().name == "support-triage" and len(pkg.anchors()) == 16
    assert m.acceptance.min_value == pytest.approx(chain["gate"].doc["threshold"])
    assert set(m.hashes) >= {"train_items_sha256", "val_items_sha256", "test_items_sha256", "config_sha256"}
    assert not (chain["out"].parent / ".pkg.partial").exists()  # the work folder is gone after success


def test_rungs_agree_with_the_merged_model(chain: dict[str, Any]) -> None:
    m = chain["pkg"].manifest
    rungs = {r.quant: r.metrics for r in m.rungs}
    # every rung was loaded by llama.cpp (its eval ran through it) and compared item by item with the merged
    # transformers model. F16 is the merged model converted: it must answer as the merged model does (one near-tie
    # may flip in half precision). Quantized rungs are measured, not assumed: a tuned 135M model 1.6 epochs in has
    # many near-ties, and rounding flips some (Q8_0: 1 of 16 after 6.7 epochs on 48 examples, 3 of 16 after 1.6
    # epochs on 200, runs of 2026-11-29) — which is why export picks the rung by its own score.
    assert rungs["F16"]["agreement"]["of"] == 16
    assert rungs["F16"]["agreement"]["same"] >= 15, rungs["F16"]["agreement"]
    for quant in ("Q8_0", "Q4_K_M"):
        assert rungs[quant]["agreement"]["of"] == 16
        assert rungs[quant]["agreement_with_merged"] == rungs[quant]["agreement"]["same"] / 16
    print("[export chain] agreement with merged: " + ", ".join(
        f"{q} {r['agreement']['same']}/{r['agreement']['of']}" for q, r in rungs.items()), file=sys.stderr)
    ladder = json.loads((chain["out"] / "ladder.json").read_text())
    assert set(ladder) == {"rungs", "recommended", "why", "tolerance"}
    assert set(ladder["rungs"][0]) == {"quant", "file", "metric", "ci", "p50_ms", "p95_ms", "peak_memory_mb",
                                       "cost_per_1k", "agreement_with_merged", "eval_run_dir"}
    assert ladder["recommended"] == m.recommended and m.recommended in ladder["why"]
    f16 = rungs["F16"]["metric"]
    assert rungs[m.recommended]["metric"] >= f16 - ladder["tolerance"] - 1e-9
    anchors = chain["pkg"].anchors()
    assert all(a.answer is not None for a in anchors)


def test_round_trip_and_modelfile(chain: dict[str, Any]) -> None:
    m = chain["pkg"].manifest
    rt = m.round_trip
    assert rt["passed"] and rt["terminator"] == "<|im_end|>" and len(rt["items"]) == 16
    assert len(rt["ggufs"]) == 3 and rt["modelfile"]["stops"][0] == "<|im_end|>"
    text = (chain["out"] / "Modelfile").read_text()
    assert f"FROM ./{chain['pkg'].gguf().name}\n" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0" in text
    assert "SYSTEM \"\"\"You are a helpful AI assistant named SmolLM" in text  # the template's default system
    if shutil.which("ollama") is None:
        assert m.ollama["ran"] is False and "ollama create" in m.ollama["how"]


def test_planted_wrong_stop_token_is_refused_with_the_diff(chain: dict[str, Any]) -> None:
    msg = str(chain["planted"])
    assert "template round trip FAILED" in msg
    assert "lack the training terminator '<|im_end|>'" in msg and "'</s>'" in msg


def _zero_lora_b(adapter: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = adapter / "adapter_model.safetensors"
    tensors = load_file(str(path))
    save_file({k: (v * 0 if "lora_B" in k else v) for k, v in tensors.items()}, str(path))


def test_non_improving_adapter_fails_the_gate_and_export_refuses_unless_forced(chain: dict[str, Any]) -> None:
    from honed.gate import gate

    bad = chain["base"] / "bad-run"
    shutil.copytree(chain["run"], bad, ignore=shutil.ignore_patterns("gate.json", "package"))
    _zero_lora_b(bad / "best")  # B = 0: the adapter adds nothing, the "tuned" model is the base
    verdict = _timed("gate (planted non-improving adapter)", gate, bad)
    assert verdict.status == "FAIL" and "improvement" in [c["name"] for c in verdict.failed_checks]
    cli = [sys.executable, "-m", "honed", "export", str(bad), "--out", str(chain["base"] / "bad-pkg"),
           "--quants", ""]
    env = {**__import__("os").environ, "HONED_HOME": str(chain["base"] / "home")}
    refused = subprocess.run(cli, capture_output=True, text=True, env=env, check=False)
    assert refused.returncode == 2 and "the gate FAILED" in refused.stderr and "improvement" in refused.stderr
    assert "Traceback" not in refused.stderr
    t0 = time.perf_counter()
    forced = subprocess.run(cli + ["--force", "--json"], capture_output=True, text=True, env=env, check=False)
    TIMES["forced export (F16 only, CLI)"] = round(time.perf_counter() - t0, 1)
    assert forced.returncode == 0, forced.stderr[-2000:]
    manifest = json.loads(forced.stdout)
    assert manifest["gate"]["forced"] is True and manifest["gate"]["overrode"] == "FAIL"
    assert [r["quant"] for r in manifest["rungs"]] == ["F16"]
    assert load_package(chain["base"] / "bad-pkg").manifest.gate["forced"] is True

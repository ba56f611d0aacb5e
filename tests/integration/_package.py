"""A real delivery package built by hand from the contract in `honed.exporting.package`, on the tiny model's GGUF
(tests/tiny_model.py): what tests/integration/test_verify.py tampers with and test_export_docs.py reads.

Its one rung is a copy (never a hard link: tests flip its bytes) of the tiny model's F16 GGUF; its task is one of
the examples with a locked test set; usage.md and benchmarks.md are rendered from two real eval runs of that GGUF
through llama.cpp, and the anchors are what the run made with the package task's own settings answered. Random
weights are enough for every check made on it: hashes, anchors replayed, numbers carried from their sources,
examples that answer as recorded. The two runs differ item by item as the documents need: the 'base' run decodes
free (the random model writes no label, no JSON) and the 'tuned' one constrained to the answer space, as the
package ships (a label or schema-valid JSON on every item); generate tasks, which cannot be constrained, differ
by temperature instead.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from honed.exporting.package import (
    Acceptance,
    Anchor,
    Manifest,
    Rung,
    load_package,
    write_anchors,
    write_manifest,
)
from tests.conftest import EXAMPLES

QUANT = "F16"
MODEL = "tiny-smollm2"
N_EVAL = 12
N_ANCHORS = 4
PEAK_MB = 412.4
COST_PER_1K = 0.0123


def eval_pair(task_dir: Path, gguf: Path, n: int, *, tuned: dict[str, Any] | None = None,
              base: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Two real eval runs of the GGUF on the first n test items: 'base' free, 'tuned' constrained (generate
    tasks, which cannot be constrained, differ by temperature instead)."""
    from honed.backends import open_backend
    from honed.evaluate.runner import evaluate
    from honed.task.spec import load_task

    task = load_task(task_dir)
    with open_backend("llamacpp", str(gguf)) as be:
        b = evaluate(task, be, "test", limit=n, constrained=False, **(base or {}))
        t = evaluate(task, be, "test", limit=n, constrained=task.kind != "generate", **(tuned or {}))
    return b, t


def gate_doc(base: Any, tuned: Any, task_dir: Path) -> dict[str, Any]:
    """gate.json as `honed gate` writes it (keys of the shared contract), from two real eval runs."""
    from honed.evaluate.compare import compare_runs

    cmp = compare_runs(base.run_dir, tuned.run_dir, n_resamples=200)
    metric = base.doc["primary_metric"]
    bv, tv = base.doc["metrics"][metric], tuned.doc["metrics"][metric]

    def side(r: Any) -> dict[str, Any]:
        return {"model": MODEL, "model_sha256": r.doc["model"]["sha256"], "value": r.doc["metrics"][metric],
                "ci": r.doc["ci"][metric], "p95_ms": r.doc["latency_ms"]["p95"], "eval_run_dir": str(r.run_dir),
                "adapter": "adapter"}

    rel = (tv - bv) / bv if bv else None
    return {"status": "PASS" if rel is not None and rel >= 0.10 else "FAIL", "created": "2026-11-23T12:00:00",
            "run_id": "tune-20261123-000000-test", "task": base.doc["task"], "task_dir": str(task_dir),
            "primary_metric": metric, "split": "test", "n_items": base.doc["n_items"],
            "base": side(base), "tuned": side(tuned),
            "relative_improvement": rel, "relative_improvement_ci": None,
            "difference": cmp["primary"]["diff"], "difference_ci": list(cmp["primary"]["ci"]),
            "p_value": cmp["primary"]["p_value"], "min_relative_improvement": 0.10,
            "threshold": bv * 1.10,
            "checks": [{"name": "improvement", "passed": bool(rel and rel >= 0.10), "detail": f"rel {rel}"},
                       {"name": "collapse", "passed": True, "detail": "no single answer over 90%"}],
            "vs_arm": None}


def ladder_doc(run: Any, file: str) -> dict[str, Any]:
    metric = run.doc["primary_metric"]
    return {"rungs": [{"quant": QUANT, "file": file, "metric": run.doc["metrics"][metric],
                       "ci": run.doc["ci"][metric], "p50_ms": run.doc["latency_ms"]["p50"],
                       "p95_ms": run.doc["latency_ms"]["p95"], "peak_memory_mb": PEAK_MB, "cost_per_1k": COST_PER_1K,
                       "agreement_with_merged": 1.0, "eval_run_dir": str(run.run_dir)}],
            "recommended": QUANT, "why": f"{QUANT} is the only rung in this test package.", "tolerance": 0.02}


def build_package(root: Path, gguf: Path, kind: str = "classify", *, n_eval: int = N_EVAL,
                  n_anchors: int = N_ANCHORS, eval_opts: dict[str, Any] | None = None, anchors_from: str = "tuned",
                  constrained: bool = True) -> dict[str, Any]:
    """A complete package folder at root, its rung a copy of `gguf`; returns what the documents were rendered from.

    `anchors_from` names the eval run made with exactly the package task's settings (its answers are the
    anchors', and it stands for the shipped rung); `constrained` sets the package task's constrained decoding.
    """
    from honed.backends.models import file_sha256
    from honed.data.lock import write_lock
    from honed.exporting.docs import render_benchmarks, render_usage
    from honed.task.data import items_hash, load_items
    from honed.task.spec import load_task

    src = EXAMPLES / kind
    (root / "task" / "data").mkdir(parents=True)
    # the package decodes as `constrained` says, whatever the example's own [generation] table says
    toml = "".join(ln for ln in (src / "honed.toml").read_text().splitlines(True) if not ln.startswith("constrained"))
    if constrained:
        toml = toml.replace("[generation]\n", "[generation]\nconstrained = true\n") if "[generation]\n" in toml \
            else toml + "\n[generation]\nconstrained = true\n"
        assert "constrained = true" in toml
    (root / "task" / "honed.toml").write_text(toml)
    shutil.copy(src / "data" / "test.jsonl", root / "task" / "data" / "test.jsonl")
    for extra in src.glob("*.json"):  # the extract example's schema file
        shutil.copy(extra, root / "task" / extra.name)
    task = load_task(root / "task")
    write_lock(task, load_items(task, "test"))
    gguf_name = f"{task.name}-{MODEL}-v1-{QUANT}.gguf"
    shutil.copyfile(gguf, root / gguf_name)
    (root / "adapter").mkdir()
    (root / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (root / "Modelfile").write_text(f"FROM ./{gguf_name}\nPARAMETER temperature 0\n")

    base, tuned = eval_pair(root / "task", gguf, n_eval, **(eval_opts or {}))
    shipped = base if anchors_from == "base" else tuned
    by_id = {r.id: r for r in shipped.records}
    items = load_items(task, "test")[:n_anchors]
    # the anchors' recorded answers: what this rung answers under the package's own settings
    anchors = [Anchor(i.id, i.inputs, i.expected, by_id[i.id].answer) for i in items]
    write_anchors(root, anchors)
    gate = gate_doc(base, tuned, src)
    ladder = ladder_doc(shipped, gguf_name)
    rung = ladder["rungs"][0]
    manifest = Manifest(
        task=task.name, kind=task.kind, version="v1", base_model={"name": MODEL, "sha256": file_sha256(gguf)},
        rungs=[Rung(quant=QUANT, file=gguf_name, metrics={k: v for k, v in rung.items() if k not in ("quant", "file")})],
        recommended=QUANT, acceptance=Acceptance(primary_metric=gate["primary_metric"], min_value=gate["threshold"]),
        gate={**gate, "forced": gate["status"] != "PASS"},
        hashes={"test": items_hash(load_items(task, "test")), "config": "0" * 64},
        tune={"run_id": gate["run_id"], "config": {"model": MODEL, "method": "lora", "rank": 8,
                                                   "learning_rate": 0.0005, "epochs": 8.0, "max_length": None,
                                                   "target_modules": ["q_proj", "v_proj"], "force": False}})
    (root / "usage.md").write_text(render_usage(root, manifest, task))
    (root / "benchmarks.md").write_text(render_benchmarks(root, manifest, gate, ladder))
    write_manifest(root, manifest)
    return {"task": task, "gate": gate, "ladder": ladder, "base": base, "tuned": tuned, "shipped": shipped,
            "anchors": anchors, "manifest": load_package(root).manifest, "gguf": gguf_name}


_BUILT: dict[str, dict[str, Any]] = {}


def shared_package(factory: pytest.TempPathFactory, gguf: Path, kind: str = "classify",
                   **opts: Any) -> dict[str, Any]:
    """One built package per kind for the whole session (test_verify and test_export_docs read the same ones).
    Its eval runs live in their own HONED_HOME beside the package."""
    if kind not in _BUILT:
        root = factory.mktemp(f"pkg-{kind}") / f"{kind}-v1"
        old = os.environ.get("HONED_HOME")
        os.environ["HONED_HOME"] = str(root.parent / "home")
        try:
            info = build_package(root, gguf, kind, **opts)
        finally:
            if old is not None:
                os.environ["HONED_HOME"] = old
        _BUILT[kind] = {**info, "root": root}
    return _BUILT[kind]

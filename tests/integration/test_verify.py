"""`honed verify PACKAGE` on a real package built by hand from the contract in `honed.export.package`.

The package holds a copy (never a hard link: tests flip its bytes) of the real SmolLM2 GGUF as its only rung,
the classify example as `task/` with a locked test set, anchors that the real model answered, and usage.md /
benchmarks.md rendered from two real eval runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from honed.export.package import (
    Acceptance,
    Anchor,
    Manifest,
    Rung,
    load_package,
    write_anchors,
    write_manifest,
)
from tests.conftest import EXAMPLES, honed_cli

pytestmark = pytest.mark.integration

N_EVAL = 12
N_ANCHORS = 4


def eval_pair(task_dir: Path, n: int, *, tuned: dict[str, Any] | None = None,
              base: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Two real eval runs of SmolLM2 on the first n test items: 'base' free decoding, 'tuned' constrained
    (generate tasks, which cannot be constrained, differ by temperature instead). Real answers that differ."""
    from honed.backends import open_backend
    from honed.evaluate.runner import evaluate
    from honed.task.spec import load_task

    task = load_task(task_dir)
    with open_backend("llamacpp", "smollm2-135m") as be:
        b = evaluate(task, be, "test", limit=n, constrained=False, **(base or {}))
        t = evaluate(task, be, "test", limit=n, constrained=task.kind != "generate", **(tuned or {}))
    return b, t


def gate_doc(base: Any, tuned: Any, task_dir: Path) -> dict[str, Any]:
    """gate.json as `honed gate` writes it (keys of the shared contract), from two real eval runs."""
    from honed.evaluate.compare import compare_runs

    cmp = compare_runs(base.run_dir, tuned.run_dir, n_resamples=200)
    metric = base.doc["primary_metric"]
    bv, tv = base.doc["metrics"][metric], tuned.doc["metrics"][metric]

    def side(r: Any, name: str) -> dict[str, Any]:
        return {"model": name, "model_sha256": r.doc["model"]["sha256"], "value": r.doc["metrics"][metric],
                "ci": r.doc["ci"][metric], "p95_ms": r.doc["latency_ms"]["p95"], "eval_run_dir": str(r.run_dir),
                "adapter": "adapter"}

    rel = (tv - bv) / bv if bv else None
    return {"status": "PASS" if bv and rel is not None and rel >= 0.10 else "FAIL", "created": "2026-11-23T12:00:00",
            "run_id": "tune-20261123-000000-test", "task": base.doc["task"], "task_dir": str(task_dir),
            "primary_metric": metric, "split": "test", "n_items": base.doc["n_items"],
            "base": side(base, "smollm2-135m"), "tuned": side(tuned, "smollm2-135m"),
            "relative_improvement": rel, "relative_improvement_ci": None,
            "difference": cmp["primary"]["diff"], "difference_ci": list(cmp["primary"]["ci"]),
            "p_value": cmp["primary"]["p_value"], "min_relative_improvement": 0.10,
            "threshold": bv * 1.10,
            "checks": [{"name": "improvement", "passed": bool(rel and rel >= 0.10), "detail": f"rel {rel}"},
                       {"name": "collapse", "passed": True, "detail": "no single answer over 90%"}],
            "vs_arm": None}


def ladder_doc(run: Any, file: str) -> dict[str, Any]:
    metric = run.doc["primary_metric"]
    return {"rungs": [{"quant": "Q4_1", "file": file, "metric": run.doc["metrics"][metric],
                       "ci": run.doc["ci"][metric], "p50_ms": run.doc["latency_ms"]["p50"],
                       "p95_ms": run.doc["latency_ms"]["p95"], "peak_memory_mb": 412.5, "cost_per_1k": 0.0123,
                       "agreement_with_merged": 1.0, "eval_run_dir": str(run.run_dir)}],
            "recommended": "Q4_1", "why": "Q4_1 is the only rung in this test package.", "tolerance": 0.02}


def build_package(root: Path, kind: str = "classify", *, n_eval: int = N_EVAL, n_anchors: int = N_ANCHORS,
                  eval_opts: dict[str, Any] | None = None, anchors_from: str = "base",
                  constrained: bool = False) -> dict[str, Any]:
    """A complete package folder at root; returns what the documents were rendered from.

    `anchors_from` names the eval run made with exactly the package task's settings (its answers are the
    anchors', and it stands for the shipped rung); `constrained` turns the package task's constrained decoding on.
    """
    from honed.backends.models import file_sha256, resolve_gguf
    from honed.data.lock import write_lock
    from honed.export.docs import render_benchmarks, render_usage
    from honed.task.data import items_hash, load_items
    from honed.task.spec import load_task

    src = EXAMPLES / kind
    (root / "task" / "data").mkdir(parents=True)
    # the package decodes as `constrained` says, whatever the example's own [generation] table says
    toml = "".join(ln for ln in (src / "honed.toml").read_text().splitlines(True) if not ln.startswith("constrained"))
    if constrained:
        toml = toml.replace("[generation]\n", "[generation]\nconstrained = true\n")
        assert "constrained = true" in toml
    (root / "task" / "honed.toml").write_text(toml)
    shutil.copy(src / "data" / "test.jsonl", root / "task" / "data" / "test.jsonl")
    for extra in src.glob("*.json"):  # the extract example's schema file
        shutil.copy(extra, root / "task" / extra.name)
    task = load_task(root / "task")
    write_lock(task, load_items(task, "test"))
    gguf_name = f"{task.name}-smollm2-135m-v1-Q4_1.gguf"
    shutil.copyfile(resolve_gguf("smollm2-135m"), root / gguf_name)
    (root / "adapter").mkdir()
    (root / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (root / "Modelfile").write_text(f"FROM ./{gguf_name}\nPARAMETER temperature 0\n")

    base, tuned = eval_pair(root / "task", n_eval, **(eval_opts or {}))
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
        task=task.name, kind=task.kind, version="v1",
        base_model={"name": "smollm2-135m", "sha256": file_sha256(resolve_gguf("smollm2-135m"))},
        rungs=[Rung(quant="Q4_1", file=gguf_name, metrics={k: v for k, v in rung.items() if k not in ("quant", "file")})],
        recommended="Q4_1", acceptance=Acceptance(primary_metric=gate["primary_metric"], min_value=gate["threshold"]),
        gate={**gate, "forced": gate["status"] != "PASS"},
        hashes={"test": items_hash(load_items(task, "test")), "config": "0" * 64},
        tune={"run_id": gate["run_id"], "config": {"model": "smollm2-135m", "method": "lora", "rank": 8,
                                                   "learning_rate": 0.0005, "epochs": 8.0, "max_length": None,
                                                   "target_modules": ["q_proj", "v_proj"], "force": False}})
    (root / "usage.md").write_text(render_usage(root, manifest, task))
    (root / "benchmarks.md").write_text(render_benchmarks(root, manifest, gate, ladder))
    write_manifest(root, manifest)
    return {"task": task, "gate": gate, "ladder": ladder, "base": base, "tuned": tuned, "anchors": anchors,
            "manifest": load_package(root).manifest, "gguf": gguf_name}


_BUILT: dict[str, dict[str, Any]] = {}


def shared_package(factory: pytest.TempPathFactory, kind: str = "classify", **opts: Any) -> dict[str, Any]:
    """One built package per kind for the whole session (test_export_docs reads the same ones): building runs
    the real model, so it is done once. Its eval runs live in their own HONED_HOME beside the package."""
    if kind not in _BUILT:
        root = factory.mktemp(f"pkg-{kind}") / f"{kind}-v1"
        old = os.environ.get("HONED_HOME")
        os.environ["HONED_HOME"] = str(root.parent / "home")
        try:
            info = build_package(root, kind, **opts)
        finally:
            if old is not None:
                os.environ["HONED_HOME"] = old
        _BUILT[kind] = {**info, "root": root}
    return _BUILT[kind]


@pytest.fixture
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return shared_package(tmp_path_factory)


@pytest.fixture
def pkg(built: dict[str, Any], tmp_path: Path) -> Path:
    """A fresh copy of the built package for each test to tamper with."""
    dst = tmp_path / "package"
    shutil.copytree(built["root"], dst, copy_function=shutil.copyfile)
    return dst


def honed(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return honed_cli(*args, cwd=cwd)


def test_untouched_package_passes(pkg: Path, built: dict[str, Any]) -> None:
    from honed.export.verify import verify

    result = verify(pkg)
    assert result.files == [] and result.problems == [], (result.files, result.problems)
    assert [a.id for a in result.anchors] == [a.id for a in built["anchors"]]
    assert all(a.matches for a in result.anchors)
    assert [a.answer for a in result.anchors] == [a.answer for a in built["anchors"]]
    assert result.anchor_accuracy == sum(a.answer == a.expected for a in built["anchors"]) / N_ANCHORS
    assert result.passed and result.gguf == built["gguf"] and result.quant == "Q4_1"


def test_cli_pass_and_json(pkg: Path) -> None:
    proc = honed("verify", str(pkg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout and "anchors through" in proc.stdout
    proc = honed("verify", str(pkg), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "PASS" and doc["n_anchors"] == N_ANCHORS and doc["anchors_matching"] == N_ANCHORS


def test_flipped_byte_in_gguf_fails_naming_the_file(pkg: Path, built: dict[str, Any]) -> None:
    gguf = pkg / built["gguf"]
    with gguf.open("r+b") as fh:
        fh.seek(gguf.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    proc = honed("verify", str(pkg), "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "FAIL"
    assert [(f["file"], f["issue"]) for f in doc["files"]] == [(built["gguf"], "changed")]
    assert doc["anchors"] == [] and any("failed its hash check" in p for p in doc["problems"])
    table = honed("verify", str(pkg))
    assert table.returncode == 1 and built["gguf"] in table.stdout and "FAIL" in table.stdout


def test_flipped_byte_with_the_mtime_restored_fails(pkg: Path, built: dict[str, Any]) -> None:
    """The sha256 cache is keyed on path, size, mtime and inode, all of which an in-place edit can keep."""
    from honed.backends.models import file_sha256

    gguf = pkg / built["gguf"]
    exported = file_sha256(gguf)  # the cache now holds the exported file's hash under this key
    st = gguf.stat()
    with gguf.open("r+b") as fh:
        fh.seek(st.st_size // 3)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(gguf, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_sha256(gguf) == exported  # control: the cache is fooled
    proc = honed("verify", str(pkg), "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "FAIL" and [(f["file"], f["issue"]) for f in doc["files"]] == [(built["gguf"], "changed")]
    assert doc["anchors"] == [] and doc["problems"][-1] == f"anchors not run: {built['gguf']} failed its hash check " \
        "(changed)"


def test_edited_anchor_fails(pkg: Path) -> None:
    from honed.export.verify import verify

    lines = (pkg / "anchors.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["answer"] = "feature_request" if row["answer"] != "feature_request" else "billing"
    lines[0] = json.dumps(row)
    (pkg / "anchors.jsonl").write_text("\n".join(lines) + "\n")
    result = verify(pkg)
    assert not result.passed
    assert [(f.file, f.issue) for f in result.files] == [("anchors.jsonl", "changed")]
    # the model was still asked, and the edited anchor is the one that no longer matches
    assert [a.id for a in result.anchors if not a.matches] == [row["id"]]


def test_stray_file_is_unlisted_and_deleted_file_is_missing(pkg: Path) -> None:
    from honed.export.verify import verify

    (pkg / "notes.txt").write_text("not shipped")
    (pkg / "Modelfile").unlink()
    result = verify(pkg)
    assert not result.passed
    assert sorted((f.file, f.issue) for f in result.files) == [("Modelfile", "missing"), ("notes.txt", "unlisted")]
    assert all(a.matches for a in result.anchors)  # the model itself is fine: only the files are wrong


def test_changed_test_set_is_caught_even_with_a_re_signed_manifest(pkg: Path) -> None:
    """Someone edits a test answer and rewrites manifest.json: the hashes agree, the lock does not."""
    from honed.export.verify import verify

    test = pkg / "task" / "data" / "test.jsonl"
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    rows[0]["expected"] = "billing" if rows[0]["expected"] != "billing" else "shipping"
    test.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_manifest(pkg, load_package(pkg).manifest)
    result = verify(pkg)
    assert result.files == [] and not result.passed
    assert any("locked test set changed" in p for p in result.problems), result.problems


def test_not_a_package_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = honed("verify", str(tmp_path))
    assert proc.returncode == 2
    assert f"{tmp_path}: not a honed package (no manifest.json)" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2


def test_unknown_quant_fails_cleanly(pkg: Path) -> None:
    proc = honed("verify", str(pkg), "--quant", "Q8_0")
    assert proc.returncode == 1 and "no Q8_0 rung in this package (it has Q4_1)" in proc.stdout

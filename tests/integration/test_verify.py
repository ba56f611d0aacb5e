"""`honed verify PACKAGE` on a real package built by hand from the contract in `honed.exporting.package`
(tests/integration/_package.py): the tiny model's F16 GGUF as its only rung (a copy: tests flip its bytes), the
classify example as `task/` with a locked test set, decoded constrained as it ships, anchors that the rung
answered through llama.cpp, and usage.md / benchmarks.md rendered from two real eval runs.

Verify's checks are mechanics (hashes, the lock, the anchors replayed on the rung and compared with what it
answered at export), so random weights serve: the anchors are labels the rung chose under the answer-space
grammar, deterministic under greedy decoding, and an edited one is caught because the rung does not answer it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from honed.exporting.package import load_package, write_manifest
from tests.conftest import honed_cli
from tests.integration._package import N_ANCHORS, QUANT, shared_package

pytestmark = pytest.mark.integration


@pytest.fixture
def built(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any) -> dict[str, Any]:
    return shared_package(tmp_path_factory, tiny_model.gguf)


@pytest.fixture
def pkg(built: dict[str, Any], tmp_path: Path) -> Path:
    """A fresh copy of the built package for each test to tamper with."""
    dst = tmp_path / "package"
    shutil.copytree(built["root"], dst, copy_function=shutil.copyfile)
    return dst


def honed(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return honed_cli(*args, cwd=cwd)


def test_untouched_package_passes(pkg: Path, built: dict[str, Any]) -> None:
    from honed.exporting.verify import verify

    result = verify(pkg)
    assert result.files == [] and result.problems == [], (result.files, result.problems)
    assert [a.id for a in result.anchors] == [a.id for a in built["anchors"]]
    assert all(a.matches for a in result.anchors)
    assert [a.answer for a in result.anchors] == [a.answer for a in built["anchors"]]
    assert result.anchor_accuracy == sum(a.answer == a.expected for a in built["anchors"]) / N_ANCHORS
    assert result.passed and result.gguf == built["gguf"] and result.quant == QUANT
    # decoded under the answer-space grammar, as the package ships: every recorded answer is a label
    task = built["task"]
    assert {a.answer for a in built["anchors"]} <= {*task.labels, task.none_label}


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
    from honed.exporting.verify import verify

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
    from honed.exporting.verify import verify

    (pkg / "notes.txt").write_text("not shipped")
    (pkg / "Modelfile").unlink()
    result = verify(pkg)
    assert not result.passed
    assert sorted((f.file, f.issue) for f in result.files) == [("Modelfile", "missing"), ("notes.txt", "unlisted")]
    assert all(a.matches for a in result.anchors)  # the model itself is fine: only the files are wrong


def test_changed_test_set_is_caught_even_with_a_re_signed_manifest(pkg: Path) -> None:
    """Someone edits a test answer and rewrites manifest.json: the hashes agree, the lock does not."""
    from honed.exporting.verify import verify

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
    assert proc.returncode == 1 and f"no Q8_0 rung in this package (it has {QUANT})" in proc.stdout

"""verify's checks that need no model: not-a-package, a broken manifest, a tampered rung that is never loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.errors import UserError
from honed.export.package import Acceptance, Anchor, Manifest, Rung, write_anchors, write_manifest
from honed.export.verify import _file_problem, _same, verify
from tests.unit.test_export_docs import package_task

pytestmark = pytest.mark.unit


def tiny_package(root: Path) -> Path:
    """A package whose 'GGUF' is a few bytes: enough for every check that runs before a model is loaded."""
    package_task(root, "classify")
    (root / "t-m-v1-Q8_0.gguf").write_bytes(b"GGUF" + bytes(range(64)))
    write_anchors(root, [Anchor("test-001", {"text": "hi"}, "NONE", "NONE")])
    write_manifest(root, Manifest(task="t", kind="classify", version="v1", base_model={"name": "m"},
                                  rungs=[Rung(quant="Q8_0", file="t-m-v1-Q8_0.gguf")], recommended="Q8_0",
                                  acceptance=Acceptance(primary_metric="macro_f1", min_value=0.5)))
    return root


def test_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"not a honed package \(no manifest.json\); make one with `honed export RUN`"):
        verify(tmp_path)


def test_broken_manifest_names_the_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"task": "t", "kind": "classify"}))
    with pytest.raises(UserError, match=r"manifest.json: invalid package manifest .*version: required key"):
        verify(tmp_path)


def test_tampered_rung_is_reported_and_never_loaded(tmp_path: Path) -> None:
    root = tiny_package(tmp_path / "pkg")
    gguf = root / "t-m-v1-Q8_0.gguf"
    data = bytearray(gguf.read_bytes())
    data[10] ^= 0xFF
    gguf.write_bytes(bytes(data))
    result = verify(root)  # a 68-byte file would make llama.cpp fail: the hash check must speak first
    assert not result.passed and result.anchors == []
    assert [(f.file, f.issue) for f in result.files] == [("t-m-v1-Q8_0.gguf", "changed")]
    assert result.problems[-1] == "anchors not run: t-m-v1-Q8_0.gguf failed its hash check (changed)"
    doc = result.as_dict()
    assert doc["status"] == "FAIL" and doc["n_anchors"] == 0


def test_unknown_rung_and_missing_lock(tmp_path: Path) -> None:
    root = tiny_package(tmp_path / "pkg")
    result = verify(root, quant="q4_k_m")
    assert not result.passed and "no Q4_K_M rung in this package (it has Q8_0)" in result.problems[0]
    # no lock file and no test hash in the manifest: the test set cannot be re-checked, and verify says so
    (root / "t-m-v1-Q8_0.gguf").unlink()
    result = verify(root)
    assert any("neither a lock file nor a hash" in p for p in result.problems)
    assert ("t-m-v1-Q8_0.gguf", "missing") in [(f.file, f.issue) for f in result.files]


def test_problem_lines_and_answer_identity() -> None:
    assert _file_problem("a/b.gguf: missing").issue == "missing"
    assert _file_problem("x.txt: not in the manifest").issue == "unlisted"
    changed = _file_problem("m.gguf: sha256 0123… but the manifest says 4567…")
    assert (changed.file, changed.issue) == ("m.gguf", "changed")
    assert _same({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, "")
    assert not _same({"a": 1}, {"a": 2}, "")
    assert _same(3, 3, "3") and not _same(3, "3", "3")
    assert _same(None, None, "garbage") and _same("raw words", None, " raw words\n")

"""verify's checks that need no model: not-a-package, a broken manifest, a tampered rung that is never loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from honed.backends.models import file_sha256
from honed.errors import UserError
from honed.exporting.package import (
    Acceptance,
    Anchor,
    Manifest,
    Rung,
    load_package,
    write_anchors,
    write_manifest,
)
from honed.exporting.verify import PackageFileRefused, _same, package_gguf, verify, verify_package_file
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


def test_answer_identity() -> None:
    assert _same({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, "")
    assert not _same({"a": 1}, {"a": 2}, "")
    assert _same(3, 3, "3") and not _same(3, "3", "3")
    assert _same(None, None, "garbage") and _same("raw words", None, " raw words\n")


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private sha256 cache: the attack below poisons it."""
    monkeypatch.setenv("HONED_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


def _edit_in_place_keeping_mtime(path: Path, offset: int) -> None:
    st = path.stat()
    with path.open("r+b") as fh:  # same inode, same size
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_in_place_edit_with_the_mtime_restored_fails(tmp_path: Path, models: Path) -> None:
    root = tiny_package(tmp_path / "pkg")
    gguf = root / "t-m-v1-Q8_0.gguf"
    exported = file_sha256(gguf)  # cached by write_manifest already
    _edit_in_place_keeping_mtime(gguf, 20)
    assert file_sha256(gguf) == exported  # control: the cache is fooled, so verify must not ask it
    result = verify(root)
    assert [(f.file, f.issue) for f in result.files] == [("t-m-v1-Q8_0.gguf", "changed")]
    assert not result.passed and result.anchors == []
    assert result.problems[-1] == "anchors not run: t-m-v1-Q8_0.gguf failed its hash check (changed)"
    with pytest.raises(PackageFileRefused, match=r"t-m-v1-Q8_0.gguf: sha256 .* but the package manifest says "):
        package_gguf(load_package(root))
    assert file_sha256(gguf) != exported  # the fresh hash replaced the stale cache entry


def _rewrite_manifest(root: Path, file: str, extra: dict[str, str] | None = None) -> None:
    doc = json.loads((root / "manifest.json").read_text())
    doc["rungs"][0]["file"] = file
    doc["files"].update(extra or {})
    (root / "manifest.json").write_text(json.dumps(doc))


def test_rung_outside_the_package_or_unlisted_is_refused(tmp_path: Path, models: Path) -> None:
    root = tiny_package(tmp_path / "pkg")
    outside = tmp_path / "x.gguf"
    outside.write_bytes((root / "t-m-v1-Q8_0.gguf").read_bytes())
    sha = file_sha256(outside)
    where = f"{root / 'manifest.json'}"
    cases = {
        str(outside): ({str(outside): sha}, (f"{where}: {str(outside)!r} is an absolute path; expected a path relative "
                                            "to the package folder")),
        "../x.gguf": ({"../x.gguf": sha}, (f"{where}: '../x.gguf' leads out of the package; expected a file inside "
                                          "the package folder")),
        "t-m-v1-Q4_0.gguf": ({}, (f"{where}: 't-m-v1-Q4_0.gguf' is not listed in the manifest's `files`, so no hash "
                                 "vouches for it; expected a file the export wrote")),
        "link.gguf": ({"link.gguf": sha}, (f"{where}: 'link.gguf' is a link leading out of the package; expected a "
                                          "file inside it")),
    }
    (root / "t-m-v1-Q4_0.gguf").write_bytes(b"GGUF")
    (root / "link.gguf").symlink_to(outside)
    for file, (extra, message) in cases.items():
        _rewrite_manifest(root, file, extra)
        result = verify(root)
        assert (result.passed, result.anchors, result.problems) == (False, [], [message]), file
        with pytest.raises(PackageFileRefused) as err:
            package_gguf(load_package(root))
        assert str(err.value) == message


def test_verify_package_file_returns_the_checked_path(tmp_path: Path, models: Path) -> None:
    root = tiny_package(tmp_path / "pkg")
    pkg = load_package(root)
    assert package_gguf(pkg) == root / "t-m-v1-Q8_0.gguf"
    assert verify_package_file(pkg, "anchors.jsonl", fresh=False) == root / "anchors.jsonl"
    (root / "anchors.jsonl").unlink()
    with pytest.raises(PackageFileRefused, match=r"anchors.jsonl is missing from the package; run `honed verify"):
        verify_package_file(pkg, "anchors.jsonl")

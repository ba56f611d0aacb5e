"""serve and monitor load a package's model only through verify's checked path (`package_gguf`): a GGUF edited in
place with its mtime put back fools the sha256 cache, and must still be refused before llama.cpp reads it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from honed.backends.models import file_sha256
from honed.exporting.package import load_package
from honed.exporting.verify import PackageFileRefused
from tests.unit.test_verify import _edit_in_place_keeping_mtime, tiny_package

pytestmark = pytest.mark.unit


@pytest.fixture
def tampered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A package whose rung was edited in place after export, its mtime restored; (root, the refusal message)."""
    monkeypatch.setenv("HONED_MODELS", str(tmp_path / "models"))  # a private sha256 cache: the attack poisons it
    root = tiny_package(tmp_path / "pkg")
    gguf = root / "t-m-v1-Q8_0.gguf"
    exported = file_sha256(gguf)
    _edit_in_place_keeping_mtime(gguf, 20)
    assert file_sha256(gguf) == exported  # control: the cache is fooled
    fresh = hashlib.sha256(gguf.read_bytes()).hexdigest()  # not through file_sha256: the cache stays fooled
    message = (f"{gguf}: sha256 {fresh[:12]}… but the package manifest says {exported[:12]}…; the file changed "
               f"since export. Run `honed verify {root}`")
    return root, message


def test_serve_refuses_a_package_gguf_edited_in_place(tampered: tuple[Path, str]) -> None:
    from honed.serve.config import ServeConfig
    from honed.serve.state import open_server

    root, message = tampered
    with pytest.raises(PackageFileRefused) as err:
        open_server(ServeConfig(target=str(root), port=0))
    assert str(err.value) == message and "\n" not in message


def test_serve_cli_refuses_it_in_one_line_exit_2(tampered: tuple[Path, str], tmp_path: Path) -> None:
    root, message = tampered
    env = {**os.environ, "HONED_HOME": str(tmp_path / "home"), "COLUMNS": "400"}
    proc = subprocess.run([sys.executable, "-m", "honed", "serve", str(root), "--port", "0"], capture_output=True,
                          text=True, env=env, check=False, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_monitor_refuses_it_as_incumbent_and_as_candidate(tampered: tuple[Path, str]) -> None:
    from honed.monitor.models import open_candidate, open_incumbent

    root, message = tampered
    with pytest.raises(PackageFileRefused) as err:
        open_incumbent(load_package(root))
    assert str(err.value) == message
    with pytest.raises(PackageFileRefused) as err2:
        open_candidate(str(root))
    assert str(err2.value) == message

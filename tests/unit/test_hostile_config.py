"""Hostile or broken configuration files and options: one error line naming the file, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def _honed(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HONED_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "honed", *args], capture_output=True, text=True, env=env,
                          check=False, timeout=120)


@pytest.mark.parametrize("body, expected", [
    (b'name = "x"\n\xff\xfe\n', "not UTF-8 text (byte 11: invalid start byte)"),
    (b'name = "x"\nn = ' + b"9" * 5000 + b"\n", "not a usable TOML file (Exceeds the limit (4300 digits)"),
])
def test_a_hostile_task_file_is_one_line_and_exit_2(tmp_path: Path, body: bytes, expected: str) -> None:
    toml = tmp_path / "honed.toml"
    toml.write_bytes(body)
    r = _honed("eval", str(toml), "--model", "smollm2-135m", home=tmp_path / "home")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert lines[0].startswith(f"error: {toml}: {expected}")


def test_a_hostile_tune_config_is_one_line(tmp_path: Path) -> None:
    from honed.errors import UserError
    from honed.train.config import load_config

    cfg = tmp_path / "tune.toml"
    cfg.write_bytes(b"rank = " + b"9" * 5000 + b"\n")
    with pytest.raises(UserError, match=r"tune.toml: not a usable TOML file \(Exceeds the limit"):
        load_config(cfg)
    cfg.write_bytes(b"rank = 8\n\xff\n")
    with pytest.raises(UserError, match="tune.toml: not UTF-8 text"):
        load_config(cfg)


def test_an_out_of_range_serve_option_is_one_line(tmp_path: Path) -> None:
    r = _honed("serve", "smollm2-135m", "--margin", "5", home=tmp_path / "home")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "honed serve: invalid option (1 error): min_margin: Input should be less than or equal to 2" in r.stderr

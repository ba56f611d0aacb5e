"""The CLI's text survives rich markup: a TOML table named in a --help or an error ("[tune]", "[[rule]]",
"[acceptance] min_value") is shown, not swallowed as a style tag (`honed tune --help` once read "( table)")."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer.main

from honed.cli import _register, app
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.unit

# rich's own tag pattern (rich.markup.RE_TAGS): an even number of backslashes before "[" leaves it a tag
_TAG = re.compile(r"((\\*)\[([a-z#/@][^[]*?)])")


def _texts(cmd: Any, path: str) -> list[tuple[str, str]]:
    out = [(f"{path}: docstring", cmd.help or "")]
    out += [(f"{path} {p.name}", getattr(p, "help", None) or "") for p in cmd.params]
    for name, sub in getattr(cmd, "commands", {}).items():  # typer vendors click: duck-type the groups
        out += _texts(sub, f"{path} {name}")
    return out


def test_no_help_text_holds_an_unescaped_markup_tag() -> None:
    _register()
    texts = _texts(typer.main.get_command(app), "honed")
    assert len(texts) > 100  # every command and option was reached
    eaten = [(where, m.group(0)) for where, text in texts for m in _TAG.finditer(text) if len(m.group(2)) % 2 == 0]
    assert eaten == []


def test_help_and_errors_show_toml_tables() -> None:
    env = {**os.environ, "COLUMNS": "250"}

    def honed(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "honed", *args], capture_output=True, text=True, env=env,
                              timeout=120, check=False)

    assert "tune settings (a [tune] table)" in honed("tune", "--help").stdout
    assert "TOML with [[rule]] entries" in honed("data", "harvest", "--help").stdout
    run = honed("bakeoff", str(EXAMPLES / "classify"), "--arm", "smollm2-135m")  # one arm: a UserError
    assert run.returncode == 2 and "or list [[bakeoff.arms]] in honed.toml" in run.stderr, run.stderr

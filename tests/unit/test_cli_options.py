"""CLI options are the config fields they set: `honed serve`'s parameters are `ServeConfig`'s field names, while the
flags users type keep their spellings (a contract)."""

from __future__ import annotations

import inspect

import pytest

pytestmark = pytest.mark.unit

KEPT_FLAGS = ("--task", "--fallback", "--log", "--api-key", "--allow-origin", "--allow-host", "--timeout",
              "--margin", "--threads", "--log-max-mb", "--constrained")


def test_serve_parameters_are_serve_config_fields() -> None:
    from honed.cli.serve_cmd import serve_command
    from honed.serve.config import ServeConfig

    params = set(inspect.signature(serve_command).parameters)
    assert params - set(ServeConfig.model_fields) == set()


def test_serve_keeps_the_flags_users_type() -> None:
    import typer
    from typer.testing import CliRunner

    from honed.cli.serve_cmd import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    missing = [flag for flag in KEPT_FLAGS if flag not in text]
    assert missing == []

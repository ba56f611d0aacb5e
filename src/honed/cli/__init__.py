"""The `honed` command. One file per command group; no logic here, only argument plumbing."""

from __future__ import annotations

import logging
import os
import sys

# llama.cpp's and torch's OpenMP threads spin while they wait; on a small machine shared with anything else
# that makes them 10–300× slower. Passive waiting costs nothing measurable when the machine is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Long work shows honed's own progress and nothing else: transformers' GGUF de-quantizing bar, its advisory
# messages and the deprecation chatter of torch/transformers/PEFT are not the user's business.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF de-quantizing bar is a bare tqdm.auto, deaf to the line above
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"(peft|transformers|torch|trl)(\.|$)")

import typer

from honed.errors import HonedError

app = typer.Typer(
    name="honed",
    help="Specialize small local LLMs for narrow structured tasks, with honest numbers at every step.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _register() -> None:
    from honed.cli import bakeoff_cmd, data_cmd, eval_cmd, plan_cmd, tune_cmd
    from honed.cli import serve_cmd
    from honed.cli import monitor_cmd
    from honed.cli import verify_cmd
    from honed.cli import gate_cmd
    from honed.cli import export_cmd
    from honed.cli import demo_cmd
    from honed.cli import init_cmd

    eval_cmd.register(app)
    bakeoff_cmd.register(app)
    plan_cmd.register(app)
    tune_cmd.register(app)
    serve_cmd.register(app)
    monitor_cmd.register(app)
    verify_cmd.register(app)
    gate_cmd.register(app)
    export_cmd.register(app)
    demo_cmd.register(app)
    init_cmd.register(app)
    app.add_typer(data_cmd.app, name="data")


def main() -> None:
    """Entry point: a HonedError is one line on stderr and a non-zero exit; anything else is a bug."""
    from rich.console import Console
    from rich.logging import RichHandler
    from rich.markup import escape

    err = Console(stderr=True)
    handler = RichHandler(console=err, show_time=False, show_path=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    _register()
    try:
        app()
    except HonedError as exc:
        # escaped: messages name TOML tables ("[acceptance] min_value"), which rich would take for markup
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished responses are cached; re-run the same command to resume")
        sys.exit(130)

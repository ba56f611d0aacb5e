"""`honed eval`, `honed compare`, `honed runs`, `honed models`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from honed.backends.models import DEFAULT_MODEL

out = Console()


def _print_md(text: str) -> None:
    # Markdown on stdout: plain when piped (so it pastes into a PR), rendered on a terminal.
    if out.is_terminal:
        out.print(Markdown(text))
    else:
        print(text)


def eval_command(
    task: Annotated[Path, typer.Argument(help="Task folder (holding honed.toml) or the honed.toml file.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Alias (see `honed models`), .gguf path, HF folder, "
                                       "or the served model name for HTTP backends.")] = DEFAULT_MODEL,
    backend: Annotated[str, typer.Option("--backend", "-b", help="llamacpp | openai | ollama | transformers")]
    = "llamacpp",
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
    repeats: Annotated[int, typer.Option(min=1, help="Runs per item (seed + r); > 1 measures consistency.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight (HTTP backends).")] = 1,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the result document here.")] = None,
    constrained: Annotated[Optional[bool], typer.Option("--constrained/--free", help="Constrain decoding to the "
                                                        "answer space (default: the task's setting).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(min=1, help="Override the task's generation budget.")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, max=2.0, help="Override the task's "
                                                         "temperature.")] = None,
    think: Annotated[Optional[bool], typer.Option("--think/--no-think", help="Thinking on/off for models that "
                                                  "have it (default: the task's setting).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N items.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="Server URL for openai/ollama backends.")] = None,
    adapter: Annotated[Optional[Path], typer.Option(help="PEFT adapter folder (transformers backend).")] = None,
    prompt: Annotated[str, typer.Option(help="Prompt template: base (the task's `template`) or tuned (its "
                                        "`tuned_template`, for a model fine-tuned on it).")] = "base",
    gpu_layers: Annotated[Optional[int], typer.Option("--gpu-layers", min=-1, help="llamacpp: layers offloaded "
                                                      "to the GPU (-1: all). Default: all where llama.cpp was "
                                                      "built with CUDA/Metal, else 0.")] = None,
) -> None:
    """Evaluate a model on a task split: metrics with 95% CIs, latency, failures by cause. Resumable."""
    from honed.backends import open_backend
    from honed.evaluate.runner import evaluate
    from honed.evaluate.summary import markdown_summary
    from honed.store import write_json_atomic
    from honed.task.spec import load_task
    from honed.tracking import log_stage

    t = load_task(task, prompt=prompt)
    options: dict[str, object] = {}
    if base_url:
        options["base_url"] = base_url
    if adapter:
        options["adapter"] = str(adapter)
    if gpu_layers is not None:
        if backend != "llamacpp":
            from honed.errors import UserError

            raise UserError(f"--gpu-layers sets llama.cpp's offload; the {backend} backend places the model itself")
        options["n_gpu_layers"] = gpu_layers
    with open_backend(backend, model, **options) as be:
        result = evaluate(t, be, split, repeats=repeats, concurrency=concurrency, constrained=constrained,
                          max_tokens=max_tokens, temperature=temperature, think=think, limit=limit,
                          progress=True)
    doc = result.document.as_json()
    _print_md(markdown_summary(doc))
    if result.run_dir:
        log_stage("eval", result.run_dir)
        out.print(f"[dim]run folder: {result.run_dir}[/]", highlight=False)
    if json_out:
        write_json_atomic(json_out, doc)
        out.print(f"[dim]wrote {json_out}[/]", highlight=False)


def compare_command(
    run_a: Annotated[str, typer.Argument(help="Run id (or prefix) or run folder: the baseline, A.")],
    run_b: Annotated[str, typer.Argument(help="Run id (or prefix) or run folder: the challenger, B.")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the comparison here.")] = None,
) -> None:
    """Paired comparison of two runs on the same items: exact McNemar and a paired bootstrap CI."""
    from honed.evaluate.compare import compare_runs, markdown_comparison
    from honed.store import Store, write_json_atomic

    store = Store()
    dirs = []
    for ref in (run_a, run_b):
        dirs.append(store.resolve_run(ref))
    cmp = compare_runs(dirs[0], dirs[1])
    _print_md(markdown_comparison(cmp))
    if json_out:
        write_json_atomic(json_out, cmp)


def runs_command(limit: Annotated[int, typer.Option(min=1)] = 20) -> None:
    """List recent runs."""
    from honed.store import Store

    table = Table("run", "task", "model", "status", "primary metric")
    for r in Store().list_runs(limit):
        s = json.loads(r["summary"]) if r["summary"] else {}
        value = s.get("value")
        table.add_row(r["run_id"], r["task"], r["model"], r["status"],
                      f"{s.get('primary_metric')} {value:.3f}" if isinstance(value, float) else "")
    out.print(table)


def models_command() -> None:
    """List the model aliases and whether the package that carries each one is installed."""
    from honed.backends.models import ALIASES, installed

    table = Table("alias", "model", "installed", "install with")
    for name, alias in ALIASES.items():
        ok = installed(name)
        table.add_row(name, alias.description, "yes" if ok else "no", "" if ok else alias.install)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
    app.command("runs")(runs_command)
    app.command("models")(models_command)

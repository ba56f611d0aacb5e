"""`honed bakeoff` and `honed quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

out = Console()


def bakeoff_command(
    task: Annotated[Path, typer.Argument(help="Task folder (holding honed.toml) or the honed.toml file.")],
    arm: Annotated[Optional[list[str]], typer.Option(
        "--arm", help="MODEL[,key=value...]; keys: label, backend, base_url, adapter, constrained, temperature, "
                      "think, max_tokens. Repeat per arm. Default: the \\[bakeoff] arms of honed.toml.")] = None,
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
    repeats: Annotated[int, typer.Option(min=1, help="Runs per item per arm.")] = 1,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N items.")] = None,
    hardware: Annotated[Optional[str], typer.Option(help="Hardware profile for the cost model (default: the "
                                                    "task's, else cpu-2core-vm).")] = None,
    hardware_file: Annotated[Optional[Path], typer.Option(help="Your own hardware profiles (TOML).")] = None,
    prices_file: Annotated[Optional[Path], typer.Option(help="Your own cloud price table (TOML).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the bake-off document here.")] = None,
    md_out: Annotated[Optional[Path], typer.Option("--md", help="Write the Markdown report here.")] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Write the HTML report here.")] = None,
    gpu_layers: Annotated[Optional[int], typer.Option("--gpu-layers", min=-1, help="Layers llama.cpp offloads "
                                                      "to the GPU in the llamacpp arms (-1: all). Default: all "
                                                      "where llama.cpp was built with CUDA/Metal, else 0.")] = None,
) -> None:
    """Models × quantizations × settings on the same items: quality with CIs, latency, memory, cost, Pareto."""
    from honed.evaluate.bakeoff import bakeoff
    from honed.report.bakeoff import bakeoff_html, bakeoff_markdown
    from honed.store import write_json_atomic, write_text_atomic
    from honed.task.spec import load_task
    from honed.tracking import log_stage

    result = bakeoff(load_task(task), arm, split=split, repeats=repeats, limit=limit, hardware=hardware,
                     hardware_file=hardware_file, prices_file=prices_file, gpu_layers=gpu_layers)
    doc = result.as_json()
    log_stage("bakeoff", None, doc)
    md = bakeoff_markdown(doc)
    print(md)
    if json_out:
        write_json_atomic(json_out, doc)
        out.print(f"[dim]wrote {json_out}[/]", highlight=False)
    if md_out:
        write_text_atomic(md_out, md)
        out.print(f"[dim]wrote {md_out}[/]", highlight=False)
    if html_out:
        write_text_atomic(html_out, bakeoff_html(doc))
        out.print(f"[dim]wrote {html_out}[/]", highlight=False)


def quantize_command(
    model: Annotated[str, typer.Argument(help="A .gguf file or a model alias.")],
    to: Annotated[str, typer.Option("--to", help="Comma-separated types, e.g. Q8_0,Q4_K_M.")] = "Q8_0,Q4_K_M",
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for the new files (default: beside "
                                                    "the source; for an alias: ~/.cache/honed/models).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Re-make files that exist.")] = False,
) -> None:
    """Quantize a GGUF with llama.cpp's quantize API, to build a quant ladder for `honed bakeoff`."""
    from rich.table import Table

    from honed.backends.models import ALIASES, models_dir
    from honed.exporting.quantize import quantize

    if out_dir is None and model in ALIASES:
        out_dir = models_dir()
    results = quantize(model, [q.strip() for q in to.split(",") if q.strip()], out_dir, overwrite=overwrite)
    table = Table("quant", "file", "MiB", "sha256", "seconds")
    for r in results:
        table.add_row(r.quant, str(r.path), f"{r.size_mb:.1f}", r.sha256[:16], f"{r.seconds:.1f}")
    out.print(table)
    out.print(f"[dim]source sha256 {results[0].source_sha256[:16]} · use a file as an arm: "
              f"honed bakeoff TASK --arm {results[0].path}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("bakeoff")(bakeoff_command)
    app.command("quantize")(quantize_command)

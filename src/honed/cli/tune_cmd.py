"""`honed tune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

out = Console()


def tune_command(
    task: Annotated[Path | None, typer.Argument(help="Task folder (holding honed.toml) or the honed.toml file.")]
    = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Base model: alias, .gguf, HF folder.")] = None,
    method: Annotated[str | None, typer.Option(help="lora | qlora | dpo")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of tune settings (a \\[tune] table).")]
    = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank (default: planned).")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Learning rate (default: planned).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs, an upper bound (default: planned).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Hard cap on optimizer steps.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Steps between validation passes.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per example (default: planned).")] = None,
    time_budget: Annotated[str | None, typer.Option(help="Training time, validation included: 600, 90s, 10m, "
                                                        "1h. Steps are set from the measured step time.")] = None,
    prompt: Annotated[str | None, typer.Option(help="auto | base | tuned: the template trained and served with "
                                                   "(auto: the task's tuned_template when it has one).")] = None,
    force: Annotated[bool, typer.Option(help="Start even when a guardrail calls the config doomed.")] = False,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue a killed or interrupted run (id or "
                                                   "folder) from its last validation pass, with its own config.")]
    = None,
) -> None:
    """LoRA fine-tune (SFT or DPO) with guardrails: completion-only loss, no cut completions, train/serve template check,
    validation metric every N steps, best checkpoint by it, collapse alarm, curves."""
    from honed.errors import UserError
    from honed.task.spec import load_task
    from honed.train.config import load_config
    from honed.tracking import log_stage
    from honed.train.sft import tune

    given = {"TASK": task, "--model": model, "--method": method, "--config": config, "--rank": rank,
             "--lr": learning_rate, "--epochs": epochs, "--max-steps": max_steps, "--eval-every": eval_every,
             "--max-length": max_length, "--time-budget": time_budget, "--prompt": prompt, "--force": force or None}
    if resume is not None:
        from honed.store import resolve_run_dir
        from honed.train.resume import resume_tune

        extra = [name for name, value in given.items() if value is not None]
        if extra:
            raise UserError(f"--resume continues a run with its own task and config.json; drop {', '.join(extra)}")
        summary = resume_tune(resolve_run_dir(resume, "tune run"))
        model_name = summary.model or "the run's model"
    else:
        if task is None:
            raise UserError("give a task folder (honed tune TASK), or --resume RUN to continue a killed run")
        t = load_task(task)
        cfg = load_config(config, model=model, method=method, rank=rank, learning_rate=learning_rate, epochs=epochs,
                          max_steps=max_steps, eval_every=eval_every, max_length=max_length, force=force or None,
                          time_budget=time_budget, prompt=prompt)
        summary = tune(t, cfg)
        model_name = cfg.model
    log_stage("tune", Path(summary.run_dir))
    sel = summary.selection
    out.print(f"[bold]{summary.status}[/] · run {summary.run_id} · {summary.steps} steps in "
              f"{summary.train_seconds} s · {summary.train_tokens_per_s} tok/s", highlight=False)
    out.print(escape(sel.why), highlight=False)
    for alarm in summary.alarms:
        out.print(f"[bold red]{escape(alarm.message)}[/]", highlight=False)
    out.print(f"adapter: {summary.adapter}\ncurves: {summary.run_dir}/curves.html\n"
              f"evaluate it: honed eval {task or summary.task_dir} --backend transformers --model {model_name} "
              f"--adapter {summary.adapter}" + (" --prompt tuned" if summary.prompt == "tuned" else "")
              + f"\ngate it: honed gate {summary.run_dir}", highlight=False)
    if summary.status == "collapsed":
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)

"""A tune run's `summary.json`, typed: what `honed tune` returns and writes (`TuneSummary`, written by
`write_summary`) and the one reader of it (`read_summary`).

Gate, export, the demo, the CLI and tracking read a finished run through this model, so a key renamed or dropped
here is an error where it is written, not a `KeyError` two stages later. The JSON keys are the contract other tools
read: they are named here exactly as they are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from honed.errors import UserError

SUMMARY_FILE = "summary.json"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Selection(_Doc):
    """Which checkpoint was kept, and why (also `RUN/selection.json`)."""

    metric: str
    base_value: float | None
    best_step: int | None
    """None when no validation pass ran."""
    best_value: float | None
    stopped_by: str
    """"max_steps/epochs", "early_stopping", "collapse", "time_budget", "interrupted", ..."""
    why: str
    collapsed: bool
    """The best checkpoint itself answers one label (seed 000): do not ship it."""
    evals: int


class Alarm(_Doc):
    """A guardrail alarm raised at a validation pass."""

    step: int
    kind: str
    message: str


class TuneSummary(_Doc):
    """The end of a tune run: its status, the checkpoint kept and how the training went."""

    run_id: str
    run_dir: str
    method: str
    status: str
    """"complete", "interrupted" or "collapsed" (the values `status.json` ends with)."""
    adapter: str | None
    """The kept adapter (`RUN/best`), None when no validation pass kept one."""
    selection: Selection
    train_seconds: float
    steps: int
    train_tokens_per_s: float | None
    train_loss: float | None
    encode: dict[str, Any]
    """The encoder's report: max_length, kept, completions skipped as too long, prompts truncated."""
    warnings: list[str]
    alarms: list[Alarm]
    prompt: str | None
    """The prompt template trained on: "base" or "tuned"."""
    plan: dict[str, Any] | None = None
    """The loop's plan (steps per epoch, validation spacing, time budget, its notes); SFT only."""
    resumed_from_step: int | None = None
    task_dir: str | None = None
    model: str | None = None
    """The base model (written by a resumed run, whose caller has no config at hand)."""
    wall_seconds: float | None = None
    step_tokens_per_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON object `summary.json` holds (the optional keys only where the recipe set them)."""
        return self.model_dump(mode="python", exclude_unset=True)


def write_summary(run_dir: Path, summary: TuneSummary) -> None:
    from honed.store import write_json_atomic

    write_json_atomic(Path(run_dir) / SUMMARY_FILE, summary.as_json())


def read_summary(run_dir: Path) -> TuneSummary:
    """The one reader of a tune run's `summary.json`: a clear error naming the file when it is absent or not one
    `honed tune` wrote."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return TuneSummary.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; the tune run never finished (resume it with "
                        f"`honed tune --resume {run_dir}`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a tune summary ({exc})") from None
    except ValidationError as exc:
        from honed.task.spec import format_validation_errors

        raise UserError(format_validation_errors(path, exc, "not a tune summary `honed tune` wrote")) from None


__all__ = ["SUMMARY_FILE", "Alarm", "Selection", "TuneSummary", "read_summary", "write_summary"]

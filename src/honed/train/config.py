"""`TuneConfig`: every knob of `honed tune`, validated; unset knobs are filled by the planner, with reasons."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from honed.backends.models import DEFAULT_MODEL
from honed.errors import UserError
from honed.task.spec import format_validation_errors


class TuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str = DEFAULT_MODEL
    """Base model: alias, .gguf path, or Hugging Face checkpoint folder."""
    method: Literal["lora", "qlora", "dpo"] = "lora"
    """lora (bf16 on CUDA, fp32 on CPU), qlora (4-bit base through bitsandbytes, CUDA only), dpo (preference
    pairs built from the task: the expected answer over the base model's own wrong one, seed 000)."""
    rank: int | None = Field(default=None, gt=0)
    """LoRA rank. Unset: the planner's choice."""
    alpha: int | None = Field(default=None, gt=0)
    """LoRA alpha. Unset: 2 × rank."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | None = None
    """Modules to adapt. Unset: the planner's choice."""
    top_layers: int | None = Field(default=None, gt=0)
    """Adapt only the top N transformer layers: the backward pass stops below them (fewer FLOPs per learned
    token), at some cost in capacity. Unset: the planner's choice (the upper half on a CPU, every layer on a GPU);
    the model's layer count adapts every layer."""
    learning_rate: float | None = Field(default=None, gt=0)
    epochs: float | None = Field(default=None, gt=0)
    """Upper bound: early stopping on the val metric usually ends training sooner."""
    max_steps: int | None = Field(default=None, gt=0)
    """Hard cap on optimizer steps (overrides epochs)."""
    time_budget: float | None = Field(default=None, gt=0)
    """Seconds of training (validation passes included) the run may take, e.g. 600. The number of steps is set
    from the step time measured on the first steps, so the learning-rate schedule completes within the budget;
    the val metric and early stopping still pick the checkpoint. Combined with max_steps/epochs: the smallest."""
    prompt: Literal["auto", "base", "tuned"] = "auto"
    """The prompt the model is trained (and then served) with: "tuned" is the task's short `tuned_template`
    (fewer tokens per learned answer), "base" its full `template`; "auto": tuned where the task declares one."""
    batch_size: int = Field(default=8, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    max_length: int | None = Field(default=None, gt=16)
    """Tokens per example. Unset: covers the longest completion and the 95th-percentile prompt."""
    eval_every: int | None = Field(default=None, gt=0)
    """Steps between validation passes (val loss + the task metric by generation). Unset: ~3 per epoch."""
    patience: int = Field(default=4, gt=0)
    """Validation passes without improvement before early stopping."""
    min_delta: float = 0.0
    """Improvement below this does not count."""
    metric_tie: float | None = Field(default=None, ge=0)
    """Val metrics this close to the highest one seen are a tie, broken by the lower val loss (the loss is read on
    every val item's answer tokens, so it is the steadier signal of the two). Unset: one val item's worth
    (1 / the items of a pass); 0 picks by the metric alone."""
    max_val_items: int = Field(default=64, gt=0)
    """Validation items generated per pass (the first N of the val split)."""
    seed: int = 0
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    entity_swaps: int | None = Field(default=None, ge=0, le=16)
    """Extraction tasks with `[extract] entities_key`: swapped copies of each training example, its entity names
    replaced by other training names of the same kind (honed.data.augment). Unset: planned (0 for other tasks)."""
    neftune_alpha: float | None = None
    """NEFTune noise (seed 001 used 5). Unset: off."""
    replay_fraction: float = Field(default=0.1, ge=0, le=0.5)
    """Share of general instruction examples mixed in against forgetting (0 to turn off). 0.03 let the demo's
    tune raise the loss on general prompts by 41% (the gate's limit is 25%); honed's general examples are short,
    so 0.1 costs ~8% more tokens."""
    replay_file: str | None = None
    """Your own general examples (JSONL with "prompt" and "response"); default: the set honed ships."""
    packing: bool = True
    """Padding-free batches: examples are concatenated, with position ids keeping them apart."""
    gradient_checkpointing: bool = False
    collapse_share: float = Field(default=0.9, gt=0.5, le=1.0)
    """Alarm when this share of val predictions is one answer (while the data's largest class is < 50%)."""
    collapse_patience: int = Field(default=2, gt=0)
    """Consecutive collapsed validation passes before stopping (a first collapse can still recover)."""
    on_collapse: Literal["stop", "warn"] = "stop"
    report_to: list[str] = []
    """Extra loggers for transformers' Trainer, e.g. ["wandb"] or ["mlflow"]."""
    dpo_beta: float = Field(default=0.1, gt=0)
    """DPO: how far the tuned model may move from the reference (TRL's beta; higher = closer)."""
    dpo_hard_negatives: bool = True
    """DPO: for items the base already answers right, reject a wrong answer anyway (NONE for a real label: the
    false NONE of seed 000; another answer for NONE) so every item teaches the boundary."""
    force: bool = False
    """Start even when a guardrail says the config is doomed."""

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """"600", "600s", "10m", "1.5h" → seconds."""
    t = text.strip().lower()
    unit = _UNITS.get(t[-1:], None)
    number = t[:-1] if unit else t
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration: expected seconds or a number with s, m or h (e.g. 10m)"
                         ) from None
    if value <= 0:
        raise ValueError(f"{text!r}: a time budget must be positive")
    return value


def load_config(path: Path | None, **overrides: object) -> TuneConfig:
    """A TOML file (optional) plus command-line overrides (None values ignored)."""
    raw: dict[str, object] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
        except (ValueError, RecursionError) as exc:  # an integer of thousands of digits, absurd nesting
            raise UserError(f"{path}: not a usable TOML file ({str(exc)[:120]})") from None
        raw = dict(raw.get("tune", raw))  # accept a [tune] table or top-level keys
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TuneConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_errors(path or "tune options", exc, "invalid tune config")) from None

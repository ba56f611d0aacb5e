"""`gate.json`, typed: what `honed gate` writes (`GateDocument`) and the one reader of it (`read_gate_document`).

Export, usage.md and benchmarks.md all read the verdict through this model, so a key renamed or dropped here is
an error where it is written, not a `KeyError` three stages later. The JSON keys are the contract other tools
read: they are named here exactly as they are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from honed.errors import UserError

GATE_FILE = "gate.json"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GateCheck(_Doc):
    """One check of the verdict: `detail` is the sentence a person reads; the numbers are the check's own."""

    name: Literal["improvement", "forgetting", "collapse", "latency", "min_value", "min_metric", "vs_arm"]
    passed: bool
    metric: str | None = None
    """min_metric: which of the task's `[acceptance] min_metrics` this is."""
    detail: str
    failed_because: list[str] | None = None
    """improvement: "too small" and/or "not significant"."""
    base: float | None = None
    tuned: float | None = None
    relative_improvement: float | None = None
    difference: float | None = None
    difference_ci: list[float] | None = None
    p_value: float | None = None
    threshold: float | None = None
    min_value: float | None = None
    base_nll: float | None = None
    tuned_nll: float | None = None
    relative_change: float | None = None
    max_forgetting: float | None = None
    top_answer: str | None = None
    top_share: float | None = None
    expected_top_share: float | None = None
    collapse_share: float | None = None
    p95_ms: float | None = None
    budget_ms: float | None = None


class GateSide(_Doc):
    """One side of the pair as it was evaluated: its score, CI, tail latency and eval run folder."""

    model: str
    value: float
    ci: list[float]
    p95_ms: float | None
    eval_run_dir: str
    model_sha256: str | None = None
    """base: the sha256 of the base model evaluated."""
    adapter: str | None = None
    """tuned: the adapter folder evaluated (`RUN/best`)."""


class VsArm(_Doc):
    """The tuned model against an eval or bake-off arm (`honed gate --vs`), paired on the shared test items."""

    run_dir: str
    run_id: str | None
    model: str
    backend: str | None
    n_paired: int
    note: str
    value: float
    tuned_value: float
    difference: float
    difference_ci: list[float]
    p_value: float
    passed: bool


class Prompts(_Doc):
    base: str
    tuned: str


class Constrained(_Doc):
    base: bool
    tuned: bool


class GateDocument(_Doc):
    """The verdict on one tune run, and what it is about (the adapter, the test set, a partial look or not)."""

    status: Literal["PASS", "FAIL"]
    created: str
    run_id: str
    task: str
    task_dir: str
    primary_metric: str
    split: str
    n_items: int
    # what the verdict is about (export refuses it for another adapter, another test set or a partial look);
    # None only in a gate.json written before gates recorded it
    n_test: int | None = None
    """The whole locked test (n_items < n_test when the gate looked at the first `--limit` items only)."""
    limited: bool | None = None
    test_items_sha256: str | None = None
    adapter_sha256: str | None = None
    base: GateSide
    tuned: GateSide
    relative_improvement: float | None
    """None where the base scores 0 (a relative gain is undefined there)."""
    relative_improvement_ci: list[float] | None
    difference: float
    difference_ci: list[float]
    p_value: float
    min_relative_improvement: float
    threshold: float
    min_value: float | None
    prompt: Prompts
    """The template each side was prompted with: "base" or "tuned"."""
    constrained: Constrained
    """Whether each side decoded under the task's answer space, as its evaluation recorded it."""
    checks: list[GateCheck]
    vs_arm: VsArm | None

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    @property
    def failed_checks(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def as_json(self) -> dict[str, Any]:
        """The JSON object `gate.json` holds (each check with its own numbers only)."""
        return self.model_dump(mode="python", exclude_unset=True)


def read_gate_document(path: Path) -> GateDocument:
    """The one reader of a `gate.json`: a clear error naming the file when it is not one `honed gate` wrote."""
    try:
        return GateDocument.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a gate document ({exc}); re-run `honed gate {path.parent}`") from None
    except ValidationError as exc:
        from honed.task.spec import format_validation_errors

        raise UserError(format_validation_errors(path, exc, "not a gate document (re-run `honed gate "
                                                 f"{path.parent}`)")) from None

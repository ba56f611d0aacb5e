"""The bake-off document, typed: what `bakeoff(task, arms)` returns and `honed bakeoff --json` writes.

`analyse` builds it and validates it here, so a key renamed or dropped is an error where it is written. The
reports (`honed.report.bakeoff`) and tracking render its JSON form (`as_json`); the keys are named exactly as
written.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CloudCost(_Doc):
    """What the same requests would cost through one cloud API (the dated price table)."""

    name: str
    cost_per_1k: float
    breakeven_requests_per_day: int | None
    """Requests a day above which the local hardware is cheaper; None where it never is."""


class ArmResult(_Doc):
    """One arm: its eval run's numbers, its cost, and how it stands against the best arm."""

    label: str
    arm: dict[str, Any]
    """The arm as given (`ArmSpec`, unset keys left out)."""
    run_id: str | None
    model: dict[str, Any]
    gpu_layers: int | None
    """llama.cpp arms: the layers that were offloaded."""
    settings: dict[str, Any]
    metrics: dict[str, Any]
    ci: dict[str, Any]
    primary: float
    """The task's primary metric (0 where the arm has none)."""
    latency_ms: dict[str, float | None]
    ttft_ms: dict[str, float | None]
    tokens_per_s: float | None
    items_per_s: float | None
    peak_memory_mb: float | None
    memory_source: str | None
    gpu_memory_mb: float | None
    cost_per_1k: float | None
    cloud: list[CloudCost]
    consistency: dict[str, Any] | None
    failures: dict[str, int]
    best: bool
    vs_best: float | None
    """Holm-adjusted p-value of the paired bootstrap against the best arm; None for the best arm itself."""
    vs_best_detail: dict[str, Any] | None
    latencies_ms: list[float]
    pareto: bool
    """No other arm is at least as good on quality, P95 latency, memory and cost, and better on one."""


class BakeoffDocument(_Doc):
    """Every arm on the same items, the best arm, the hardware and price tables the costs come from."""

    task: str
    kind: str
    split: str
    n_items: int
    data: dict[str, Any]
    primary_metric: str
    best: str
    """The best arm's label (highest primary metric; ties to the lower P95 latency)."""
    hardware: dict[str, Any]
    cloud_prices_as_of: str
    significance: str
    arms: list[ArmResult]

    @property
    def best_arm(self) -> ArmResult:
        return next(a for a in self.arms if a.best)

    def as_json(self) -> dict[str, Any]:
        """The JSON object `--json` writes and the reports render."""
        return self.model_dump(mode="python")


__all__ = ["ArmResult", "BakeoffDocument", "CloudCost"]

"""Routing economics from real traffic: seed 004's 70/30 table, with the split read from the log.

Pure arithmetic over `honed.cost.model` (a dated hardware profile and a dated cloud price). The cascade runs
every request on the local model first and sends the escalated ones on to the cloud, so the hybrid pays the
local machine for all of the traffic and the cloud for the escalated share; all-local is the same machine
answering everything itself (what the escalated requests would then get is a quality question, not a cost one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from honed.cost.model import CloudPrice, HardwareProfile

DAYS_PER_MONTH = 30.44
"""Average month (365.25 / 12), as `HardwareProfile.fixed_usd_per_day` amortizes by."""


@dataclass(frozen=True)
class TrafficFigures:
    """What the log says about volume, routing and size of the requests."""

    n_requests: int
    n_escalated: int
    requests_per_day: float
    volume_source: str
    prompt_tokens: float
    """Mean prompt tokens per request."""
    completion_tokens: float
    """Mean completion tokens per request."""
    token_source: str
    local_seconds: float | None
    """Mean latency of the requests the local model answered (None when it answered none)."""

    @property
    def escalation_rate(self) -> float:
        return self.n_escalated / self.n_requests if self.n_requests else 0.0


def routing_economics(fig: TrafficFigures, hw: HardwareProfile, hw_as_of: str, price: CloudPrice,
                      prices_as_of: str, days_per_month: float = DAYS_PER_MONTH) -> dict[str, Any]:
    """Monthly USD of all-cloud, hybrid (the log's split) and all-local; every price with its date."""
    v, e, m = fig.requests_per_day, fig.escalation_rate, days_per_month
    cloud_per_request = (fig.prompt_tokens * price.input_per_mtok + fig.completion_tokens * price.output_per_mtok) / 1e6
    all_cloud = v * m * cloud_per_request
    cloud_fallback = e * v * m * cloud_per_request
    doc: dict[str, Any] = {
        "traffic": {**asdict(fig), "escalation_rate": e},
        "hardware": {"profile": hw.name, "as_of": hw_as_of, "description": hw.description,
                     "fixed_usd_per_day": hw.fixed_usd_per_day, "usd_per_busy_hour": hw.usd_per_busy_hour,
                     "concurrency": hw.concurrency},
        "cloud": {"model": price.name, "as_of": prices_as_of, "input_per_mtok": price.input_per_mtok,
                  "output_per_mtok": price.output_per_mtok, "usd_per_request": cloud_per_request},
        "days_per_month": m,
        "all_cloud": all_cloud,
        "cloud_fallback": cloud_fallback,
    }
    rows = []
    if fig.local_seconds is None:
        doc.update(local=None, hybrid=None, all_local=None, saving=None, saving_pct=None, breakeven_escalation=None,
                   breakeven_requests_per_day=None, note="the local model answered no request in the log: no local latency to cost")
    else:
        busy_s_per_day = v * fig.local_seconds / hw.concurrency
        machines = max(1, math.ceil(busy_s_per_day / 86400))
        fixed = hw.fixed_usd_per_day * machines * m
        power = busy_s_per_day / 3600 * hw.usd_per_busy_hour * m
        all_local = fixed + power
        hybrid = all_local + cloud_fallback
        saving = all_cloud - hybrid
        doc.update(
            local={"machines": machines, "busy_hours_per_day": busy_s_per_day / 3600, "fixed": fixed, "power": power},
            hybrid=hybrid, all_local=all_local, saving=saving,
            saving_pct=saving / all_cloud if all_cloud > 0 else None,
            # the escalation rate at which the hybrid costs what all-cloud costs (≤ 0: it never does)
            breakeven_escalation=(1 - all_local / all_cloud) if all_cloud > 0 else None,
            breakeven_requests_per_day=_breakeven_volume(hw, fig.local_seconds, cloud_per_request, e, m),
        )
        hw_src = f"profile {hw.name}, prices as of {hw_as_of}"
        rows += [
            [(f"Local model: {'rent' if hw.rental_usd_per_hour is not None else 'amortization'} "
             f"({machines} machine{'s' if machines > 1 else ''})"), fixed, hw_src],
            ["Local model: power", power,
             f"{busy_s_per_day / 3600:.2f} busy h/day × ${hw.usd_per_busy_hour:.3f}/h ({hw_src})"],
        ]
    rows.append([f"Cloud fallback ({e:.1%} escalated)", cloud_fallback,
                 f"{price.name}, prices as of {prices_as_of}"])
    if doc["hybrid"] is not None:
        rows += [["Hybrid total", doc["hybrid"], f"{1 - e:.1%} local / {e:.1%} cloud, from the log"],
                 ["All-cloud", all_cloud, f"{price.name}, prices as of {prices_as_of}"],
                 ["All-local", doc["all_local"], "every request on the local model, none escalated"],
                 ["Monthly saving, hybrid vs all-cloud", doc["saving"],
                  "" if doc["saving_pct"] is None else f"{doc['saving_pct']:.1%} of all-cloud"]]
    else:
        rows.append(["All-cloud", all_cloud, f"{price.name}, prices as of {prices_as_of}"])
    doc["rows"] = [{"component": c, "monthly_usd": usd, "basis": b} for c, usd, b in rows]
    return doc


def _breakeven_volume(hw: HardwareProfile, seconds: float, cloud_per_request: float, escalation: float,
                      days_per_month: float) -> float | None:
    """Requests/day above which the hybrid costs less than all-cloud at this escalation rate (one machine's
    fixed cost against the cloud spend the local answers save); None when the local answers save nothing."""
    power_per_request = seconds / hw.concurrency / 3600 * hw.usd_per_busy_hour
    saved_per_request = cloud_per_request * (1 - escalation) - power_per_request
    if saved_per_request <= 0:
        return None
    return hw.fixed_usd_per_day / saved_per_request

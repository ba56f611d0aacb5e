"""Prometheus metrics of one server (its own registry, so two apps in one process never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# `*_created` series double the output and no dashboard reads them.
disable_created_metrics()

# Latencies of a small CPU model run from ~50 ms (cached prefix) to tens of seconds (long chat, busy queue).
BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("honed_requests", "Requests answered, by route, HTTP status and answering layer",
                                ["route", "status", "layer"], registry=r)
        self.latency = Histogram("honed_request_latency_seconds", "Time to answer, by route", ["route"],
                                 buckets=BUCKETS, registry=r)
        self.escalations = Counter("honed_escalations", "Task requests sent to a later layer, by task and reason",
                                   ["task", "reason"], registry=r)
        self.in_flight = Gauge("honed_in_flight_requests", "Requests being answered now", registry=r)
        self.log_lines = Counter("honed_log_lines", "Lines appended to the request log", registry=r)
        self.queued = Gauge("honed_queued_requests", "Requests waiting for a model, by layer", ["layer"], registry=r)

    def track_queue(self, layer: str, depth: Callable[[], int]) -> None:
        self.queued.labels(layer).set_function(lambda: float(depth()))

    def observe(self, route: str, status: int, layer: str, seconds: float) -> None:
        self.requests.labels(route, str(status), layer).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

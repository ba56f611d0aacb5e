"""The server's request log: whole lines under concurrency, size rotation, torn-tail repair; keys and limits."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from honed.data.logs import LogRecord, read_log
from honed.errors import UserError
from honed.serve.auth import AuthError, KeyCheck, RateLimiter, bearer
from honed.serve.config import ServeConfig, is_loopback
from honed.serve.requestlog import RequestLog, repair_tail

pytestmark = pytest.mark.unit


def _record(i: int, pad: int = 0) -> LogRecord:
    return LogRecord.new(task="t", inputs={"text": f"message {i}" + "x" * pad}, output="billing", answer="billing",
                         layer="primary", model="m", latency_ms=1.0, signals={"margin": 0.5, "i": i})


def test_rotation_keeps_whole_lines_and_every_record(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.jsonl", max_bytes=4096, keep=50)
    threads = [threading.Thread(target=lambda k=k: [log.write(_record(k * 100 + j, pad=j)) for j in range(40)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = log.files()
    assert len(files) > 3, "4 writers × 40 records of ~0.5 KiB must have rotated a 4 KiB log several times"
    seen = []
    for f in files:
        assert f.stat().st_size <= 4096
        seen += [rec.signals["i"] for _, rec in read_log(f)]
    assert sorted(seen) == sorted(k * 100 + j for k in range(4) for j in range(40))
    assert log.written == 160


def test_rotation_drops_only_beyond_keep(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "r.jsonl", max_bytes=1200, keep=2)
    for i in range(30):
        log.write(_record(i, pad=100))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    newest = [rec.signals["i"] for f in log.files() for _, rec in read_log(f)]
    assert max(newest) == 29 and 0 not in newest


def test_torn_tail_is_cut_and_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    good = _record(1).model_dump_json() + "\n"
    path.write_text(good + '{"timestamp": "2026-')
    assert repair_tail(path) == len('{"timestamp": "2026-')
    assert path.read_text() == good
    assert (tmp_path / "r.jsonl.torn").read_text().startswith('{"timestamp"')
    log = RequestLog(path, max_bytes=1 << 20)
    log.write(_record(2))
    assert [rec.signals["i"] for _, rec in read_log(path)] == [1, 2]
    assert repair_tail(path) == 0


def test_keys_and_bearer() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer(None) is None
    off = KeyCheck([])
    assert not off.required and off.identity(None, None, "1.2.3.4") == "addr:1.2.3.4"
    on = KeyCheck(["k1", "k2"])
    assert on.identity("Bearer k2", None, "x").startswith("key:")
    assert on.identity(None, "k1", "x") != on.identity(None, "k2", "x")
    with pytest.raises(AuthError, match="missing API key"):
        on.identity(None, None, "x")
    with pytest.raises(AuthError, match="invalid API key"):
        on.identity("Bearer nope", None, "x")


def test_rate_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    rl = RateLimiter(per_minute=3, clock=lambda: now[0])
    assert [rl.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.acquire("a")
    assert wait == 20  # one token every 20 s
    assert rl.acquire("b") == 0.0  # per identity
    now[0] = 20.0
    assert rl.acquire("a") == 0.0 and rl.acquire("a") > 0
    assert RateLimiter(0).acquire("a") == 0.0


def test_exposure_needs_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONED_API_KEYS", raising=False)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    ServeConfig(target="m").check_exposure()
    with pytest.raises(UserError, match="refusing to bind 0.0.0.0"):
        ServeConfig(target="m", host="0.0.0.0").check_exposure()
    ServeConfig(target="m", host="0.0.0.0", api_keys=["k"]).check_exposure()
    monkeypatch.setenv("HONED_API_KEYS", "a, b")
    cfg = ServeConfig(target="m", host="0.0.0.0", api_keys=["a"])
    assert cfg.api_keys == ["a", "b"]
    cfg.check_exposure()


def test_config_is_strict() -> None:
    with pytest.raises(ValueError, match="extra"):
        ServeConfig.model_validate({"target": "m", "prot": 80})
    assert json.loads(ServeConfig(target="m").model_dump_json())["min_margin"] == 0.2

"""Streaming over planted outputs (a scripted backend that hands its answer over word by word): the verdict event
when the cascade escalates after the stream, the time limit over a whole stream (decoding stopped, one log line),
and the metrics counted when the stream ends. The real model and the openai client: tests/integration/
test_serve_stream.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from honed.backends.scripted import ScriptedBackend
from honed.data.logs import read_log
from honed.serve.app import app_for
from honed.serve.auth import KeyCheck, RateLimiter
from honed.serve.config import ServeConfig
from honed.serve.layers import Layer, Worker
from honed.serve.metrics import Metrics
from honed.serve.requestlog import RequestLog
from honed.serve.state import Server
from honed.task.spec import load_task
from honed.types import Request, Response

pytestmark = pytest.mark.unit


class Dripping(ScriptedBackend):
    """Hands its scripted answer over one word at a time, `delay` seconds apart, and counts what it handed over."""

    streams = True

    def __init__(self, model: str, script: Callable[[Request], str], delay: float = 0.0) -> None:
        super().__init__(model, script=script)
        self.delay = delay
        self.handed: list[str] = []

    def stream(self, request: Request, on_text: Callable[[str], None]) -> Response:
        text = self._script(request)
        for i, word in enumerate(text.split(" ")):
            time.sleep(self.delay)
            piece = word if i == 0 else " " + word
            on_text(piece)
            self.handed.append(piece)
        return Response(text=text, finish_reason="stop", completion_tokens=len(text.split(" ")))


def _server(tmp_path: Path, task_dir: Path, primary: Dripping, fallback: Dripping | None = None,
            **settings: object) -> tuple[TestClient, Server]:
    cfg = ServeConfig(target="scripted", log_path=tmp_path / "requests.jsonl", **settings)  # type: ignore[arg-type]
    layers = [Layer("primary", "planted-a", "scripted", primary, Worker("primary"))]
    if fallback is not None:
        layers.append(Layer("fallback", "planted-b", "scripted", fallback, Worker("fallback")))
    task = load_task(task_dir)
    server = Server(cfg, layers, {task.name: task}, RequestLog(cfg.resolved_log_path(), 1 << 20), Metrics(),
                    KeyCheck(cfg.api_keys), RateLimiter(cfg.rate_limit))
    return TestClient(app_for(server), base_url="http://127.0.0.1:8080"), server


def _events(client: TestClient, path: str, body: dict) -> list[str]:
    with client.stream("POST", path, json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]


def test_streamed_refusal_is_replaced_by_the_fallbacks_verdict(tmp_path: Path, mini_task: Path) -> None:
    refusal = "I'm sorry, I cannot help with that."
    client, server = _server(tmp_path, mini_task, Dripping("a", lambda r: refusal), Dripping("b", lambda r: "billing"))
    events = _events(client, "/v1/chat/completions", {"model": "task:mini", "stream": True, "messages": [
        {"role": "user", "content": json.dumps({"text": "charged twice"})}]})
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    content = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert content[0] == "" and "".join(c for c in content if c) == refusal and len([c for c in content if c]) == 7
    verdict = chunks[-1]["honed"]
    assert (verdict["answer"], verdict["layer"], verdict["valid"]) == ("billing", "fallback", True)
    assert verdict["signals"]["reason"] == "invalid:refused" and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    (rec,) = [rec for _, rec in read_log(server.log.path)]
    assert rec.layer == "fallback" and rec.answer == "billing" and rec.signals["stream"] is True
    assert rec.request_id == verdict["request_id"]
    metrics = client.get("/metrics").text
    assert 'honed_requests_total{layer="primary",route="chat",status="200"} 1.0' in metrics
    assert "honed_in_flight_requests 1.0" in metrics  # the /metrics request itself: the stream was counted out


def test_a_stream_past_the_time_limit_stops_decoding(tmp_path: Path, mini_task: Path) -> None:
    slow = Dripping("a", lambda r: " ".join(["word"] * 40), delay=0.05)
    client, server = _server(tmp_path, mini_task, slow, timeout_s=0.5)
    events = _events(client, "/v1/chat/completions", {"model": "planted-a", "stream": True, "max_tokens": 64,
                                                      "messages": [{"role": "user", "content": "talk"}]})
    error = json.loads(events[-1])["error"]
    assert error["code"] == "timeout" and error["type"] == "timeout_error"
    streamed = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert 3 <= len([s for s in streamed if s]) < 40
    time.sleep(0.5)
    handed = len(slow.handed)
    time.sleep(0.5)
    assert len(slow.handed) == handed < 20  # the worker stopped at the next word: 40 words take 2 s
    (rec,) = [rec for _, rec in read_log(server.log.path)]
    assert rec.signals["stopped"] == "timeout" and rec.task == "chat" and rec.output.startswith("word word")
    assert 'route="chat",status="504"' in client.get("/metrics").text


def test_task_route_stream_events(tmp_path: Path, mini_task: Path) -> None:
    client, server = _server(tmp_path, mini_task, Dripping("a", lambda r: "shipping"))
    events = _events(client, "/v1/tasks/mini", {"input": {"text": "where is it"}, "stream": True})
    assert [json.loads(e) for e in events[:-2]] == [{"delta": "shipping"}] and events[-1] == "[DONE]"
    body = json.loads(events[-2])
    assert (body["answer"], body["valid"], body["layer"]) == ("shipping", True, "primary")
    assert len(list(read_log(server.log.path))) == 1
    bad = client.post("/v1/tasks/mini", json={"input": {"text": "x"}, "stream": "yes"})
    assert bad.status_code == 400  # only `"stream": true` streams; anything else is not the task's body

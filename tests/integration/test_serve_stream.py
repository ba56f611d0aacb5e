"""Streaming through a real `honed serve` subprocess with the official `openai` client, on the tiny model's GGUF:
tokens arrive as they are decoded (chat and task routes), the task's verdict comes in the last event, every
streamed request leaves one whole log line, and a client that leaves stops the decoding and frees the model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Served, start_serve, stop_serve

pytestmark = pytest.mark.integration
openai = pytest.importorskip("openai")

TASK = "support-triage"
MODEL = "tiny-smollm2.F16"
MESSAGES = [{"role": "user", "content": "Write a long story about a ship."}]


@pytest.fixture(scope="module")
def served(tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # a long time limit: the machine may be busy, and the limit's own path is a unit test's
    s = start_serve(tmp_path_factory.mktemp("serve-stream"), str(tiny_model.gguf), "--timeout", "600")
    yield s
    stop_serve(s)


def _client(s: Served) -> Any:
    return openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused-on-loopback", max_retries=0)


def _lines(log: Path, request_id: str) -> list[dict[str, Any]]:
    raw = log.read_bytes()
    assert raw.endswith(b"\n"), "the log ends in a half-written line"
    return [rec for rec in map(json.loads, raw.splitlines()) if rec["request_id"] == request_id]


def test_chat_tokens_arrive_while_the_answer_is_decoded(served: Served) -> None:
    client = _client(served)
    whole = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=120, messages=MESSAGES)
    assert whole.usage.completion_tokens > 50  # a long answer: the random model does not stop early
    arrivals: list[tuple[float, str]] = []
    chunks = []
    for c in client.chat.completions.create(model=MODEL, temperature=0, max_tokens=120, stream=True,
                                            messages=MESSAGES):
        chunks.append(c)
        if c.choices and c.choices[0].delta.content:
            arrivals.append((time.time(), c.choices[0].delta.content))
    assert len(arrivals) > 10, "the answer came in one piece, not as it was decoded"
    assert "".join(t for _, t in arrivals) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens

    (rec,) = _lines(served.log, chunks[0].id.removeprefix("chatcmpl-"))  # one whole line per streamed request
    assert rec["output"] == whole.choices[0].message.content and rec["signals"]["stream"] is True
    # the first piece reached the client before the server decoded the last token
    assert arrivals[0][0] < rec["signals"]["last_token_unix"] <= arrivals[-1][0]


def test_task_route_streams_then_gives_the_verdict(served: Served) -> None:
    client = _client(served)
    text = json.dumps({"text": "My parcel has been stuck in transit for a week"})
    chunks = list(client.chat.completions.create(model=f"task:{TASK}", stream=True,
                                                 messages=[{"role": "user", "content": text}]))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    verdict = chunks[-1].model_extra["honed"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert verdict["layer"] == "primary" and verdict["output"] == streamed
    assert verdict["valid"] is True and verdict["answer"] == streamed  # constrained: always a label
    (rec,) = _lines(served.log, verdict["request_id"])
    assert rec["answer"] == verdict["answer"] and rec["signals"]["stream"] is True
    assert "primary_margin" in rec["signals"]  # the confidence is measured after the stream, as without it

    # the task route itself: {"delta": …} events, then the task's answer document
    events = []
    with httpx.stream("POST", f"{served.url}/v1/tasks/{TASK}", timeout=600,
                      json={"input": {"text": "I was charged twice"}, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    body = json.loads(events[-2])
    deltas = [json.loads(e)["delta"] for e in events[:-2]]
    assert deltas and "".join(deltas) == body["output"] and body["valid"] is True
    assert len(_lines(served.log, body["request_id"])) == 1


def test_a_client_that_leaves_stops_the_decoding(served: Served) -> None:
    client = _client(served)
    stream = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=200, stream=True,
                                            messages=MESSAGES)
    first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    stream.close()  # the client goes away mid-answer
    rid = first.id.removeprefix("chatcmpl-")
    deadline = time.monotonic() + 30
    while not _lines(served.log, rid) and time.monotonic() < deadline:
        time.sleep(0.1)
    (rec,) = _lines(served.log, rid)
    assert rec["signals"]["stopped"] == "client_disconnected"
    full = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=200, messages=MESSAGES)
    assert full.choices[0].message.content.startswith(rec["output"])
    assert len(rec["output"]) < len(full.choices[0].message.content)
    health = httpx.get(f"{served.url}/health", timeout=10).json()
    assert health["models"]["primary"]["busy"] == 0 and health["models"]["primary"]["waiting"] == 0
    metrics = httpx.get(f"{served.url}/metrics", timeout=10).text
    in_flight = [line for line in metrics.splitlines() if line.startswith("honed_in_flight_requests ")]
    assert in_flight and float(in_flight[0].split()[-1]) == 1.0  # only the /metrics request itself
    assert 'honed_requests_total{layer="primary",route="chat",status="499"} 1.0' in metrics  # counted once it ended

"""The server's guardrails over planted outputs (scripted layers): escalation causes, 4xx/5xx in OpenAI's error
shape, timeouts that leave the server healthy. The real models' paths are in tests/integration/test_serve.py.
"""

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
from honed.types import Request

pytestmark = pytest.mark.unit
Script = Callable[[Request], str]


def _client(tmp_path: Path, task_dir: Path, primary: Script, fallback: Script | None = None,
            **settings: object) -> tuple[TestClient, Server]:
    cfg = ServeConfig(target="scripted", log_path=tmp_path / "requests.jsonl", **settings)  # type: ignore[arg-type]
    layers = [Layer("primary", "planted-a", "scripted", ScriptedBackend("a", script=primary), Worker("primary"))]
    if fallback is not None:
        layers.append(Layer("fallback", "planted-b", "scripted", ScriptedBackend("b", script=fallback),
                            Worker("fallback")))
    task = load_task(task_dir)
    server = Server(cfg, layers, {task.name: task}, RequestLog(cfg.resolved_log_path(), 1 << 20), Metrics(),
                    KeyCheck(cfg.api_keys), RateLimiter(cfg.rate_limit))
    return TestClient(app_for(server), base_url="http://127.0.0.1:8080"), server  # the bound address: Host is checked


def _log(server: Server) -> list:
    return [rec for _, rec in read_log(server.log.path)]


def test_invalid_primary_escalates_and_both_layers_are_logged(tmp_path: Path, mini_task: Path) -> None:
    client, server = _client(tmp_path, mini_task, lambda r: "I'm sorry, I cannot help with that.",
                             lambda r: "billing")
    r = client.post("/v1/tasks/mini", json={"input": {"text": "charged twice"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["answer"], body["layer"], body["valid"], body["model"]) == ("billing", "fallback", True, "planted-b")
    s = body["signals"]
    assert s["escalated"] is True and s["reason"] == "invalid:refused" and s["primary_valid"] is False
    assert s["primary_cause"] == "refused" and s["fallback_answer"] == "billing" and not s["all_layers_failed"]
    (rec,) = _log(server)
    assert rec.layer == "fallback" and rec.request_id == body["request_id"] and rec.signals["reason"] == "invalid:refused"


def test_low_agreement_escalates(tmp_path: Path, mini_task: Path) -> None:
    # Greedy (seed 0) says billing; every sample says shipping: agreement 0 < 0.6.
    client, _ = _client(tmp_path, mini_task, lambda r: "billing" if r.sampling.seed == 0 else "shipping",
                        lambda r: "NONE", confidence="consistency", samples=3)
    s = client.post("/v1/tasks/mini", json={"input": {"text": "x"}}).json()["signals"]
    assert s["primary_agreement"] == 0.0 and s["primary_samples"] == 3 and s["reason"] == "low_agreement"
    client2, _ = _client(tmp_path / "2", mini_task, lambda r: "billing", lambda r: "NONE", confidence="consistency")
    body = client2.post("/v1/tasks/mini", json={"input": {"text": "x"}}).json()
    assert body["layer"] == "primary" and body["signals"]["agreement"] == 1.0 and not body["signals"]["escalated"]


def test_every_layer_invalid(tmp_path: Path, mini_task: Path) -> None:
    client, server = _client(tmp_path, mini_task, lambda r: "hmm", lambda r: "billing or shipping")
    body = client.post("/v1/tasks/mini", json={"input": {"text": "x"}}).json()
    assert body["valid"] is False and body["answer"] is None and body["signals"]["all_layers_failed"] is True
    assert body["output"] == "billing or shipping" and _log(server)[0].answer is None


def test_bad_requests_get_clear_4xx_and_the_server_stays_healthy(tmp_path: Path, mini_task: Path) -> None:
    client, server = _client(tmp_path, mini_task, lambda r: "billing", max_body_kb=1)
    cases = [
        (client.post("/v1/tasks/nope", json={"input": {"text": "x"}}), 404, "unknown task 'nope'; this server has: mini"),
        (client.post("/v1/tasks/mini", content=b'{"input": ', headers={"content-type": "application/json"}), 400,
         "invalid JSON in the request body"),
        (client.post("/v1/tasks/mini", json={"text": "x"}), 400, 'expected a body {"input"'),
        (client.post("/v1/tasks/mini", json={"input": {"txt": "x"}}), 400, "input lacks ['text']"),
        (client.post("/v1/tasks/mini", json={"input": {"text": "x" * 2000}}), 413, "larger than this server's limit"),
        (client.post("/v1/chat/completions", json={"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
         404, "unknown model 'gpt-4'; this server has: planted-a, task:mini"),
        (client.post("/v1/chat/completions", json={"model": "planted-a", "messages": []}), 400, "messages"),
        (client.post("/v1/chat/completions", json={"model": "planted-a", "n": 2,
                                                   "messages": [{"role": "user", "content": "hi"}]}), 400, "n must be 1"),
        (client.get("/v1/nothing"), 404, "Not Found"),
    ]
    for resp, status, text in cases:
        assert resp.status_code == status, resp.text
        err = resp.json()["error"]
        assert text in err["message"] and set(err) == {"message", "type", "param", "code"}
    assert client.get("/health").json()["status"] == "ok"
    assert client.post("/v1/tasks/mini", json={"input": {"text": "x"}}).status_code == 200
    assert len(_log(server)) == 1  # refused requests are not logged as answers
    metrics = client.get("/metrics").text
    assert 'honed_requests_total{layer="-",route="task",status="400"} 3.0' in metrics
    assert 'honed_requests_total{layer="primary",route="task",status="200"} 1.0' in metrics


def test_keys_and_rate_limit(tmp_path: Path, mini_task: Path) -> None:
    client, _ = _client(tmp_path, mini_task, lambda r: "billing", api_keys=["k1"], rate_limit=2)
    # Wrong keys spend their address's budget (test_serve_hardening): send them from another address.
    stranger = TestClient(client.app, base_url="http://127.0.0.1:8080", client=("10.0.0.8", 4000))
    r = stranger.get("/v1/models")
    assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
    assert stranger.get("/v1/models", headers={"Authorization": "Bearer bad"}).status_code == 401
    assert client.get("/health").status_code == 200  # health stays open for probes
    ok = {"Authorization": "Bearer k1"}
    ids = [m["id"] for m in client.get("/v1/models", headers=ok).json()["data"]]
    assert ids == ["planted-a", "task:mini"]
    assert client.post("/v1/tasks/mini", json={"input": {"text": "x"}}, headers=ok).status_code == 200
    limited = client.post("/v1/tasks/mini", json={"input": {"text": "x"}}, headers=ok)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "30"


def test_timeout_is_504_and_drops_queued_work(tmp_path: Path, mini_task: Path) -> None:
    def slow(r: Request) -> str:
        time.sleep(0.6)
        return "billing"

    client, server = _client(tmp_path, mini_task, slow, timeout_s=0.2)
    r = client.post("/v1/tasks/mini", json={"input": {"text": "x"}})
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert client.get("/health").json()["status"] == "ok"
    time.sleep(0.8)
    assert not server.log.path.exists()  # a request that timed out is not an answered request


def test_chat_route_and_sse(tmp_path: Path, mini_task: Path) -> None:
    client, server = _client(tmp_path, mini_task, lambda r: f"echo {r.messages[-1].content}")
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    body = client.post("/v1/chat/completions", json={"model": "planted-a", "messages": msgs}).json()
    assert body["choices"][0]["message"]["content"] == "echo hi" and body["object"] == "chat.completion"
    (rec,) = _log(server)
    assert rec.task == "chat" and rec.input == {"messages": [{"role": "system", "content": "be brief"},
                                                             {"role": "user", "content": "hi"}]}
    r = client.post("/v1/chat/completions", json={"model": "planted-a", "messages": msgs, "stream": True})
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo hi"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    task = client.post("/v1/chat/completions", json={"model": "task:mini", "messages": [
        {"role": "user", "content": json.dumps({"text": "charged"})}]}).json()
    assert task["honed"]["layer"] == "primary" and task["honed"]["valid"] is False  # "echo …" is no label


def test_worker_queue_bound_and_cancelled_jobs_never_run() -> None:
    import asyncio
    import threading

    from honed.serve.layers import QueueFull

    gate, ran = threading.Event(), []

    def job(name: str) -> str:
        gate.wait(5)
        ran.append(name)
        return name

    async def scenario() -> None:
        w = Worker("w", max_queue=1)
        first = asyncio.ensure_future(w.run(lambda: job("first")))
        while w.busy == 0:  # the first job is running, the queue is empty
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(w.run(lambda: job("second")))
        for _ in range(500):  # until the second job sits in the queue (a fixed sleep was flaky under load)
            if w.waiting:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await w.run(lambda: job("third"))
        second.cancel()  # a request that timed out while queued
        await asyncio.sleep(0.05)
        gate.set()
        assert await first == "first"
        for _ in range(500):  # the worker drops the cancelled job as soon as it is free
            if not w.waiting:
                break
            await asyncio.sleep(0.01)
        assert await w.run(lambda: "after") == "after"
        w.stop()

    asyncio.run(scenario())
    assert ran == ["first"]


def test_served_extraction_answers_are_checked_against_the_tasks_relation_types(tmp_path: Path) -> None:
    """examples/extract declares allowed_relationships: the answer `honed serve` returns (and logs) is the checked
    one — an inverted MANAGES turned round, an impossible WRITTEN_IN dropped — and `output` is what the model
    wrote, as the evaluations that measured it saw them."""
    from tests.conftest import EXAMPLES

    said = {"entities": [{"name": "Oracle", "type": "datastore"}, {"name": "infra team", "type": "team"}],
            "relationships": [{"source": "Oracle", "relation": "MANAGES", "target": "infra team"},
                              {"source": "infra team", "relation": "WRITTEN_IN", "target": "Oracle"}]}
    client, server = _client(tmp_path, EXAMPLES / "extract", lambda r: json.dumps(said))
    r = client.post("/v1/tasks/infra-graph", json={"input": {"sentence": "Oracle is managed by the infra team."}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"]["relationships"] == [{"source": "infra team", "relation": "MANAGES", "target": "Oracle"}]
    assert body["answer"]["entities"] == said["entities"] and json.loads(body["output"]) == said
    assert _log(server)[0].answer == body["answer"]

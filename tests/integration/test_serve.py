"""`honed serve` as a user runs it: a real subprocess on 127.0.0.1, the real SmolLM2 (primary) and the real
Gemma 3 270M base model (fallback), the official `openai` client, the request log read back by `honed data harvest`.

Server A: no keys, `--margin 1.01` (no answer can reach it) so every task request escalates to Gemma.
Server B: SmolLM2 alone with API keys. The load test and the kill -9 run against a server of their own (same
settings), so no later test meets a server that one test killed.
Real models, not the tiny random one: a chat answer that closes its JSON object and stops within its tokens, a
base model without a chat template behind the fallback, and answers slow enough that requests queue under load
are what these tests read; the real models answer them in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from honed.data.logs import read_log
from tests.conftest import Served, require_models, start_serve, stop_serve

pytestmark = pytest.mark.integration
openai = pytest.importorskip("openai")

TASK = "support-triage"
KEY = "serve-test-key"
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
LABELS = ("billing", "bug_report", "feature_request", "account_access", "shipping", "NONE")
MESSAGES = ["I was charged twice for my membership this month", "The app crashes when I open the settings page",
            "Please add a dark mode to the recipe viewer", "I can't log in, the verification code never arrives",
            "My parcel has been stuck in transit for a week", "Do you sell cast iron pans in red?"]


start, stop = start_serve, stop_serve  # test_serve_package and test_serve_upstream use these names too


def log_lines(path: Path) -> list[str]:
    """Request ids of every line of the log and its rotated files (oldest first), checking that each line is
    a whole record and that each file ends on a line boundary."""
    files = sorted(path.parent.glob(path.name + ".*[0-9]"), key=lambda p: -int(p.suffix[1:]))
    ids: list[str] = []
    for f in [*files, path] if path.exists() else files:
        raw = f.read_bytes()
        assert not raw or raw.endswith(b"\n"), f"{f} ends in a half-written line"
        skipped: list[str] = []
        ids += [rec.request_id for _, rec in read_log(f, skipped)]
        assert not skipped
    return ids


def _newlines(path: Path) -> int:
    """Lines in the log and its rotated files, counted without parsing (safe while the server writes)."""
    return sum(f.read_bytes().count(b"\n") for f in path.parent.glob(path.name + "*"))


@pytest.fixture(scope="module")
def escalating(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_models("smollm2-135m", "gemma3-270m")
    s = start(tmp_path_factory.mktemp("serve-a"), "smollm2-135m", "--fallback", "gemma3-270m", "--margin", "1.01",
              "--max-body-kb", "8")
    yield s
    stop(s)


def _keyed(root: Path) -> Served:
    require_models("smollm2-135m")
    # A 4 KB log rotates every ~5 lines: the load test counts lines across the rotated files.
    return start(root, "smollm2-135m", "--api-key", KEY, "--rate-limit", "100000", "--log-max-mb", "0.004",
                 "--log-keep", "1000")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = _keyed(tmp_path_factory.mktemp("serve-b"))
    yield s
    stop(s)


@pytest.fixture
def doomed(tmp_path: Path) -> Iterator[Served]:
    """A keyed server for one test that kills it with SIGKILL."""
    s = _keyed(tmp_path / "serve-c")
    yield s
    stop(s)


def test_openai_client_chat_task_and_forced_escalation(escalating: Served, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=f"{escalating.url}/v1", api_key="unused-on-loopback", max_retries=0)
    ids = [m.id for m in client.models.list().data]
    assert ids == ["smollm2-135m", "gemma3-270m", f"task:{TASK}"]

    chat = client.chat.completions.create(model="smollm2-135m", temperature=0, max_tokens=12,
                                          messages=[{"role": "user", "content": "Say hello."}])
    assert chat.choices[0].message.content and chat.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="smollm2-135m", temperature=0, max_tokens=12, stream=True,
                                            messages=[{"role": "user", "content": "Say hello."}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == chat.choices[0].message.content
    person = client.chat.completions.create(
        model="smollm2-135m", temperature=0, max_tokens=80,
        messages=[{"role": "user", "content": "Describe a person as JSON with a name and an age."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    assert person.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(person.choices[0].message.content), PERSON)

    # The task route through the client's generic post(): the raw body comes back as a dict.
    body = client.post(f"/tasks/{TASK}", body={"input": {"text": MESSAGES[0]}}, cast_to=object)
    assert body["layer"] == "fallback" and body["model"] == "gemma3-270m" and body["valid"] is True
    s = body["signals"]
    assert s["escalated"] is True and s["reason"] == "low_margin" and s["primary_valid"] is True
    assert s["primary_answer"] in LABELS
    # margin = p(answer) − p(best other answer): at most p(answer), at least p(answer) − (1 − p(answer)), and
    # negative exactly when the greedy answer is not the most probable whole answer
    p = s["primary_p_answer"]
    assert 2 * p - 1 - 1e-5 <= s["primary_margin"] <= p + 1e-6
    assert (s["primary_margin"] >= 0) == (s["primary_answer"] == s["primary_top_answer"])
    assert body["answer"] == s["fallback_answer"] and body["answer"] in LABELS

    # The task route as a chat model: the user message is the input fields as JSON.
    via_chat = client.chat.completions.create(model=f"task:{TASK}", messages=[
        {"role": "user", "content": json.dumps({"text": MESSAGES[4]})}])
    extra = via_chat.model_extra["honed"]
    assert via_chat.choices[0].message.content == extra["answer"] and extra["layer"] == "fallback"

    # The fallback model is also a chat model of its own.
    client.chat.completions.create(model="gemma3-270m", temperature=0, max_tokens=4,
                                   messages=[{"role": "user", "content": "The sky is"}])

    records = [rec for _, rec in read_log(escalating.log)]
    by_id = {r.request_id: r for r in records}
    task_rec = by_id[body["request_id"]]
    assert (task_rec.layer, task_rec.model, task_rec.answer) == ("fallback", "gemma3-270m", body["answer"])
    assert task_rec.signals["primary_answer"] == s["primary_answer"] and len(task_rec.model_sha256 or "") == 64
    shas = {r.layer: r.model_sha256 for r in records}
    assert {r.layer for r in records} == {"primary", "fallback"} and shas["primary"] != shas["fallback"]
    assert [r.task for r in records].count("chat") == 4

    # `honed data harvest` reads the log serve wrote: the escalated answers become training examples.
    out = tmp_path / "harvest"
    proc = subprocess.run([sys.executable, "-m", "honed", "data", "harvest", str(escalating.task_dir),
                           str(escalating.log), "--rule", "train: escalated == true", "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HONED_HOME": str(escalating.home)})
    assert proc.returncode == 0, proc.stderr
    harvested = [json.loads(line) for line in (out / "harvested.jsonl").read_text().splitlines()]
    assert {h["text"] for h in harvested} == {MESSAGES[0], MESSAGES[4]}
    summary = json.loads((out / "harvest.json").read_text())
    assert summary["dropped"].get("other task") == 4  # the chat lines


def test_bad_requests_are_4xx_and_the_server_stays_healthy(escalating: Served) -> None:
    url = escalating.url
    cases = [
        (httpx.post(f"{url}/v1/tasks/{TASK}", content=b'{"input": {"text": ', timeout=30,
                    headers={"content-type": "application/json"}), 400, "invalid JSON"),
        (httpx.post(f"{url}/v1/tasks/{TASK}", json={"input": {"text": "x" * 20000}}, timeout=30), 413, "8 KiB"),
        (httpx.post(f"{url}/v1/tasks/nope", json={"input": {"text": "x"}}, timeout=30), 404, f"has: {TASK}"),
        (httpx.post(f"{url}/v1/tasks/{TASK}", json={"input": {"body": "x"}}, timeout=30), 400, "lacks ['text']"),
        (httpx.post(f"{url}/v1/chat/completions", json={"model": "smollm2-135m", "messages": "hi"}, timeout=30), 400,
         "messages"),
    ]
    for resp, status, text in cases:
        assert resp.status_code == status, resp.text
        assert text in resp.json()["error"]["message"]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    health = httpx.get(f"{url}/health", timeout=10).json()
    assert health["status"] == "ok" and escalating.proc.poll() is None
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'route="task",status="413"' in metrics and "honed_escalations_total" in metrics


def test_a_web_page_cannot_drive_the_real_server(escalating: Served) -> None:
    """The review's probe against a real `honed serve`: a page's text/plain POST, a rebinding page's Host."""
    url, port = escalating.url, escalating.url.rsplit(":", 1)[1]
    before = _newlines(escalating.log)
    body = json.dumps({"input": {"text": "poison the log"}})
    attack = httpx.post(f"{url}/v1/tasks/{TASK}", content=body, timeout=30, headers={
        "content-type": "text/plain", "origin": "http://evil.example", "host": "attacker.example"})
    assert attack.status_code == 403 and attack.json()["error"]["code"] == "origin_not_allowed"
    assert httpx.get(f"{url}/health", headers={"host": f"evil.example:{port}"}, timeout=10).status_code == 403
    plain = httpx.post(f"{url}/v1/tasks/{TASK}", content=body, headers={"content-type": "text/plain"}, timeout=30)
    assert plain.status_code == 415
    assert _newlines(escalating.log) == before  # nothing generated, nothing logged
    health = httpx.get(f"{url}/health", headers={"host": f"localhost:{port}"}, timeout=10)
    assert health.status_code == 200 and "log" not in health.json()
    own = httpx.post(f"{url}/v1/tasks/{TASK}", json={"input": {"text": MESSAGES[0]}}, timeout=120,
                     headers={"origin": f"http://localhost:{port}"})  # a page the server itself would serve
    assert own.status_code == 200 and _newlines(escalating.log) == before + 1
    assert escalating.log.stat().st_mode & 0o777 == 0o600


def test_keys_are_required_when_configured(keyed: Served) -> None:
    anonymous = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        anonymous.models.list()
    assert httpx.post(f"{keyed.url}/v1/tasks/{TASK}", json={"input": {"text": "x"}}, timeout=30).status_code == 401
    client = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=KEY, max_retries=0)
    body = client.post(f"/tasks/{TASK}", body={"input": {"text": MESSAGES[1]}}, cast_to=object)
    assert body["layer"] == "primary" and body["valid"] is True and "margin" in body["signals"]


def _hammer(url: str, seconds: float, clients: int, stop_early: threading.Event | None = None) -> dict[str, int]:
    """`clients` threads posting task and chat requests for `seconds`; counts of 200s and of failures."""
    counts = {"ok": 0, "other": 0, "errors": 0}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def run(k: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
            i = 0
            while time.monotonic() < end and not (stop_early and stop_early.is_set()):
                i += 1
                try:
                    if (k + i) % 4 == 0:
                        r = c.post(f"{url}/v1/chat/completions", json={
                            "model": "smollm2-135m", "max_tokens": 4, "temperature": 0,
                            "messages": [{"role": "user", "content": f"Count to {k + i}"}]})
                    else:
                        r = c.post(f"{url}/v1/tasks/{TASK}", json={"input": {"text": MESSAGES[(k + i) % 6]}})
                    key = "ok" if r.status_code == 200 else "other"
                except httpx.HTTPError:
                    key = "errors"
                with lock:
                    counts[key] += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def test_load_loses_no_log_line_and_kill_9_tears_none(doomed: Served) -> None:
    keyed = doomed
    before = len(log_lines(keyed.log))
    counts: dict[str, int] = {}
    loader = threading.Thread(target=lambda: counts.update(_hammer(keyed.url, seconds=8, clients=8)))
    loader.start()
    busy_seen = 0
    time.sleep(1)
    while loader.is_alive():  # health answers while the model is generating: the event loop never runs it
        health = httpx.get(f"{keyed.url}/health", timeout=10).json()["models"]["primary"]
        busy_seen += health["busy"] > 0 and health["waiting"] > 0
        time.sleep(0.5)
    loader.join()
    assert busy_seen >= 1
    after = log_lines(keyed.log)
    assert counts["ok"] >= 8 and counts["other"] == 0 and counts["errors"] == 0, counts
    assert len(after) - before == counts["ok"]  # one whole line per answered request, none lost
    assert len(set(after)) == len(after)

    # kill -9 in the middle of a load: every line still parses; only in-flight requests may be missing.
    assert len(list(keyed.log.parent.glob("requests.jsonl.*"))) >= 1, "the log should have rotated"
    before = len(after)
    result: dict[str, int] = {}
    killed = threading.Event()
    loader = threading.Thread(target=lambda: result.update(_hammer(keyed.url, seconds=60, clients=8,
                                                                    stop_early=killed)))
    loader.start()
    deadline = time.monotonic() + 60
    while _newlines(keyed.log) < before + 3 and time.monotonic() < deadline:  # kill mid-load, not before it
        time.sleep(0.2)
    keyed.proc.send_signal(signal.SIGKILL)
    keyed.proc.wait(10)
    killed.set()  # clients stop after the request they were in (which now fails)
    loader.join(60)
    lines = log_lines(keyed.log)
    added = len(lines) - before
    assert added >= 3 and result["errors"] >= 1, (added, result)
    assert result["ok"] <= added <= result["ok"] + 8, (added, result)

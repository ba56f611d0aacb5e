"""Attacks and faults against the real ASGI app (scripted layers): each test makes the request a hostile page or
client would, and checks the server refuses it the documented way, logs nothing, and leaks nothing.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from starlette.testclient import TestClient

from honed.backends.scripted import ScriptedBackend
from honed.data.dedup import content_hash
from honed.data.logs import read_log
from honed.errors import UserError
from honed.serve.app import app_for
from honed.serve.auth import KeyCheck, RateLimiter
from honed.serve.config import ServeConfig
from honed.serve.layers import Layer, Worker
from honed.serve.limits import MAX_CANDIDATES, LimitExceeded, check_schema, pattern_size
from honed.serve.metrics import Metrics
from honed.serve.origin import refusal
from honed.serve.requestlog import RequestLog
from honed.serve.state import Server
from honed.task.spec import load_task
from honed.types import Request, Response
from tests.conftest import write_task

pytestmark = pytest.mark.unit
URL = "http://127.0.0.1:8080"
JSON = {"content-type": "application/json"}


class SchemaBackend(ScriptedBackend):
    """A scripted model that accepts JSON-schema constraints (records them instead of compiling)."""

    supports_schema: ClassVar[bool] = True


class UpstreamBackend(ScriptedBackend):
    in_process: ClassVar[bool] = False


class InProcessBackend(ScriptedBackend):
    in_process: ClassVar[bool] = True


def _server(tmp_path: Path, task_dirs: list[Path], backend: ScriptedBackend, **settings: Any) -> Server:
    cfg = ServeConfig(target="scripted", log_path=tmp_path / "log" / "requests.jsonl", **settings)
    layers = [Layer("primary", "planted-a", "scripted", backend, Worker("primary"))]
    tasks = {t.name: t for t in (load_task(d) for d in task_dirs)}
    log = RequestLog(cfg.resolved_log_path(), int(cfg.log_max_mb * 1024 * 1024), cfg.log_keep, cfg.log_inputs)
    return Server(cfg, layers, tasks, log, Metrics(), KeyCheck(cfg.api_keys), RateLimiter(cfg.rate_limit))


def _client(tmp_path: Path, task_dir: Path, script: Callable[[Request], Any] = lambda r: "billing",
            backend: type[ScriptedBackend] = ScriptedBackend, **settings: Any) -> tuple[TestClient, Server]:
    server = _server(tmp_path, [task_dir], backend("a", script=script), **settings)
    return TestClient(app_for(server), base_url=URL, raise_server_exceptions=False), server


def _records(server: Server) -> list[Any]:
    return [rec for _, rec in read_log(server.log.path)] if server.log.path.exists() else []


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "planted-a", "messages": [{"role": "user", "content": "hi"}], **fields}


# --- a web page driving a loopback server -------------------------------------------------------------------------

def test_cross_origin_text_plain_post_is_refused_and_not_logged(tmp_path: Path, mini_task: Path) -> None:
    client, server = _client(tmp_path, mini_task, allow_origins=["http://localhost:3000"])
    backend = server.layers[0].backend
    body = json.dumps({"input": {"text": "poison"}})
    attack = client.post("/v1/tasks/mini", content=body, headers={
        "content-type": "text/plain", "origin": "http://evil.example", "host": "attacker.example"})
    assert attack.status_code == 403 and attack.json()["error"]["code"] == "origin_not_allowed"
    refused = [
        ({"content-type": "text/plain", "origin": "http://evil.example"}, 403),  # right Host, foreign page
        ({"content-type": "application/json", "origin": "http://evil.example"}, 403),
        ({"content-type": "application/json", "host": "evil.example:8080"}, 403),  # DNS rebinding
        ({"content-type": "application/json", "host": "127.0.0.1:9999"}, 403),  # not the bound port
        ({"content-type": "application/json", "origin": "null"}, 403),  # a sandboxed frame or file://
        ({"content-type": "text/plain"}, 415),  # a form or text body from anywhere
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
        ({}, 415),
    ]
    for headers, status in refused:
        r = client.post("/v1/tasks/mini", content=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
    assert client.get("/health", headers={"host": "evil.example:8080"}).status_code == 403  # rebinding reads
    assert client.get("/v1/models", headers={"origin": "http://evil.example"}).status_code == 403
    assert not server.log.path.exists() and backend.calls == 0  # nothing generated, nothing logged
    allowed = [{}, {"origin": URL}, {"origin": "http://localhost:3000"}, {"origin": "HTTP://LocalHost:3000/"},
               {"host": "localhost:8080"}, {"host": "[::1]:8080"}, {"host": "localhost:8080",
                                                                   "origin": "http://localhost:8080"}]
    for headers in allowed:
        r = client.post("/v1/tasks/mini", content=body, headers={**JSON, **headers})
        assert r.status_code == 200, (headers, r.text)
    assert len(_records(server)) == len(allowed)


def test_host_and_origin_rules() -> None:
    def why(headers: dict[str, str], host: str = "127.0.0.1", port: int = 8080, hosts: list[str] | None = None,
            origins: list[str] | None = None) -> str | None:
        return refusal(headers, host, port, hosts or [], origins or [])

    assert why({"host": "127.0.0.1:8080"}) is None
    assert why({"host": "LOCALHOST:8080"}) is None
    assert why({"host": "127.0.0.1"}) is not None  # port 80 is not the bound port
    assert why({"host": "localhost"}, port=80) is None  # browsers leave the default port out
    assert why({"host": "[::1]:8080"}, host="::1") is None
    assert why({"host": "box.lan:8080"}) is not None
    assert why({"host": "box.lan:8080"}, hosts=["box.lan:8080"]) is None
    assert why({"host": "192.168.1.4:8080"}, host="192.168.1.4") is None  # the bound host itself
    assert why({}) is not None  # no Host at all (HTTP/1.0 from a script): not a named address
    # Bound to a wildcard the server cannot know its names: Host is open, a foreign Origin is not.
    assert why({"host": "anything:1"}, host="0.0.0.0") is None
    assert why({"host": "anything:1", "origin": "http://anything:1"}, host="0.0.0.0") is not None
    assert why({"host": "x:1", "origin": "https://app.example"}, host="0.0.0.0", origins=["https://app.example"]) is None
    assert why({"host": "box:1"}, host="0.0.0.0", hosts=["box:1"]) is None
    assert why({"host": "other:1"}, host="0.0.0.0", hosts=["box:1"]) is not None
    assert "--allow-origin" in str(why({"host": "127.0.0.1:8080", "origin": "http://evil.example"}))
    assert "--allow-host" in str(why({"host": "evil.example:8080"}))


# --- one request exhausting memory --------------------------------------------------------------------------------

def test_huge_schema_counts_are_400_fast_with_flat_memory(tmp_path: Path, mini_task: Path) -> None:
    client, server = _client(tmp_path, mini_task, lambda r: '{"a": []}', backend=SchemaBackend)
    backend = server.layers[0].backend
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(16):
        deep = {"type": "array", "items": deep}
    attacks = [
        ({"type": "array", "minItems": 1e9}, "minItems 1000000000.0 is above this server's limit of 256"),
        ({"type": "array", "items": {"type": "string", "maxLength": 10**6}},
         "maxLength 1000000 is above this server's limit of 256"),
        ({"type": "object", "minProperties": -1}, "minProperties must be a whole number ≥ 0, got -1"),
        ({"type": "array", "maxItems": 2.5}, "maxItems must be a whole number ≥ 0, got 2.5"),
        ({"type": "string", "pattern": "a{100000}"}, "pattern repeats 100000 times; this server allows at most 256"),
        ({"type": "string", "pattern": "((a{200}){200})"},
         "pattern expands to 40000 atoms; this server allows at most 1024"),
        ({"$ref": "https://evil.example/schema.json"},
         "$ref 'https://evil.example/schema.json': only local references (#/...) are allowed"),
        ({"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(129)}},
         "the schema has 129 properties; this server allows at most 128"),
        (deep, "the schema nests 17 levels; this server allows at most 16"),
        ({"type": "string", "enum": ["x" * 100] * 170}, "the schema is 17536 bytes; this server allows at most 16384"),
    ]
    rss0 = _rss_mb()
    for schema, message in attacks:
        t0 = time.perf_counter()
        r = client.post("/v1/chat/completions", json=_chat(response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}))
        assert time.perf_counter() - t0 < 1.0
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert (err["message"], err["code"], err["param"]) == (f"response_format: {message}", "schema_too_large",
                                                               "response_format")
    big = client.post("/v1/chat/completions", json=_chat(response_format={"type": "json_object", "schema": {
        "type": "array", "minItems": 10**9}}))
    assert big.status_code == 400 and "minItems 1000000000" in big.json()["error"]["message"]
    assert _rss_mb() - rss0 < 50
    assert backend.calls == 0 and not server.log.path.exists()
    # Control: a schema within the bounds reaches the model with its constraint.
    seen: list[Request] = []
    backend._script = lambda req: seen.append(req) or '{"a": []}'
    ok = {"type": "object", "properties": {"a": {"type": "array", "minItems": 0, "maxItems": 256}}}
    r = client.post("/v1/chat/completions", json=_chat(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": ok}}))
    assert r.status_code == 200, r.text
    assert seen[0].constraint is not None and seen[0].constraint.schema == ok


def test_pattern_size_counts_expansion() -> None:
    assert pattern_size("^[a-z]{3}-[0-9]{4}$") == 8
    assert pattern_size("(ab){3}c") == 7
    assert pattern_size("((a{4}){4})") == 16
    assert pattern_size(r"[\]{]{2}\{x") == 4  # escapes and classes are one atom; a literal { is not a count
    assert pattern_size("a{2,}") == 3
    with pytest.raises(LimitExceeded, match="repeats 257 times"):
        pattern_size("a{0,257}")
    check_schema({"type": "object", "properties": {"minItems": {"type": "integer"}}})  # a property *named* minItems


def test_the_largest_allowed_schema_compiles_cheaply() -> None:
    """The bounds are safe for llama.cpp's real converter and grammar parser, not just small numbers."""
    llama_cpp = pytest.importorskip("llama_cpp")
    schema = {"type": "object", "properties": {
        "items": {"type": "array", "minItems": 256, "maxItems": 256,
                  "items": {"type": "string", "minLength": 256, "maxLength": 256}},
        "code": {"type": "string", "pattern": "^((([a-z]{4}){4}){4}){4}$"}}, "required": ["items", "code"]}
    check_schema(schema)
    rss0, t0 = _rss_mb(), time.perf_counter()
    llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    assert time.perf_counter() - t0 < 5.0 and _rss_mb() - rss0 < 50


def test_grammar_cache_is_bounded() -> None:
    pytest.importorskip("llama_cpp")
    import llama_cpp

    from honed.backends.llamacpp import GRAMMAR_CACHE_SIZE, LlamaCppBackend
    from honed.types import Constraint

    backend = LlamaCppBackend.__new__(LlamaCppBackend)  # the cache alone: no model file needed
    backend._llama_cpp = llama_cpp
    backend._grammars = OrderedDict()
    hot_one = Constraint("json_schema", schema={"type": "integer", "minimum": 0})
    hot = backend._grammar(hot_one)
    for i in range(1, 40):
        backend._grammar(Constraint("json_schema", schema={"type": "integer", "minimum": i}))
        backend._grammar(hot_one)  # in use on every other request
    assert len(backend._grammars) == GRAMMAR_CACHE_SIZE
    assert backend._grammar(hot_one) is hot  # the one in use survived 39 others, compiled once
    assert json.loads(next(iter(backend._grammars)))[1] == {"type": "integer", "minimum": 25}  # oldest kept


# --- bodies that crashed the parser, and errors that leaked paths --------------------------------------------------

def test_unparseable_bodies_are_400_with_a_generic_message(tmp_path: Path, mini_task: Path) -> None:
    client, server = _client(tmp_path, mini_task)
    generic = "invalid JSON in the request body: numbers are limited to 4300 digits and nesting to 64 levels"
    bodies = [
        '{"input": {"text": "x", "n": ' + "9" * 5000 + "}}",
        '{"input": {"text": "x", "deep": ' + "[" * 2000 + "]" * 2000 + "}}",
        '{"input": {"text": "x", "deep": ' + "[" * 100 + "]" * 100 + "}}",  # parses, but nests past 64
    ]
    for raw in bodies:
        r = client.post("/v1/tasks/mini", content=raw, headers=JSON)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["message"] == generic
    via_chat = client.post("/v1/chat/completions", json={"model": "task:mini", "messages": [
        {"role": "user", "content": '{"text": ' + "1" * 5000 + "}"}]})
    assert via_chat.status_code == 400 and "JSON object of the task's input fields" in via_chat.json()["error"]["message"]
    deep_chat = client.post("/v1/chat/completions", json={"model": "task:mini", "messages": [
        {"role": "user", "content": '{"text": ' + "[" * 2000 + "]" * 2000 + "}"}]})
    assert deep_chat.status_code == 400
    assert not server.log.path.exists()


def test_500_502_and_task_errors_leak_no_path_or_url(tmp_path: Path, mini_task: Path) -> None:
    secret = tmp_path / "secret" / "model.gguf"

    def crash(req: Request) -> str:
        raise RuntimeError(f"cannot read {secret}")

    client, _ = _client(tmp_path / "a", mini_task, crash)
    r = client.post("/v1/tasks/mini", json={"input": {"text": "x"}})
    assert r.status_code == 500
    msg = r.json()["error"]["message"]
    assert msg.startswith("internal error (reference ") and msg.endswith("); the server's log has the details")
    assert str(tmp_path) not in r.text and "RuntimeError" not in r.text

    upstream = "http://10.1.2.3:8000/v1/chat/completions"
    failing = Response(text="", finish_reason="error", error=f"HTTP 500 from {upstream}")
    client, _ = _client(tmp_path / "b", mini_task, lambda req: failing, backend=UpstreamBackend)
    r = client.post("/v1/chat/completions", json=_chat())
    assert r.status_code == 502
    assert r.json()["error"]["message"] == ("the upstream server of the primary model could not answer; the server's "
                                            "log has the details")
    local = Response(text="", finish_reason="error", error=f"failed to load {secret}: too long")
    client, _ = _client(tmp_path / "c", mini_task, lambda req: local, backend=InProcessBackend)
    r = client.post("/v1/chat/completions", json=_chat())
    assert r.status_code == 400 and r.json()["error"]["message"] == "the model could not answer: failed to load <path>: too long"

    # A template error names the task, not its honed.toml.
    tpl = write_task(tmp_path / "tpl", """
name = "tpl"
kind = "classify"
[prompt]
template = "Message: {{ text.body }}"
[classify]
labels = ["billing", "shipping"]
""")
    client, server = _client(tmp_path / "d", tpl)
    r = client.post("/v1/tasks/tpl", json={"input": {"text": "plain string"}})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert message.startswith("task 'tpl': prompt template uses a variable the item does not have")
    assert str(tmp_path) not in r.text and "honed.toml" not in r.text

    health = client.get("/health")
    assert health.status_code == 200 and "log" not in health.json() and str(tmp_path) not in health.text
    assert str(server.log.path) not in health.text


# --- body read under the timeout, auth failures limited, strict fields, capped candidates --------------------------

def test_a_trickled_body_times_out(tmp_path: Path, mini_task: Path) -> None:
    _, server = _client(tmp_path, mini_task, timeout_s=0.3)
    app = app_for(server)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/tasks/mini", "raw_path": b"/v1/tasks/mini", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}
    sent: list[dict[str, Any]] = []

    async def scenario() -> float:
        first = True

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b'{"input": {"te', "more_body": True}
            await asyncio.sleep(30)  # the client stalls mid-body
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        t0 = time.perf_counter()
        await asyncio.wait_for(app(scope, receive, send), 5)
        return time.perf_counter() - t0

    seconds = asyncio.run(scenario())
    assert sent[0]["status"] == 504 and seconds < 2.0
    assert json.loads(sent[1]["body"])["error"]["code"] == "timeout"


def test_failed_auth_is_rate_limited_per_address(tmp_path: Path, mini_task: Path) -> None:
    client, _ = _client(tmp_path, mini_task, api_keys=["k1"], rate_limit=3)
    statuses = [client.get("/v1/models", headers={"Authorization": f"Bearer guess{i}"}).status_code
                for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    locked = client.get("/v1/models", headers={"Authorization": "Bearer k1"})
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "20"  # no key compared while locked
    other = TestClient(client.app, base_url=URL, client=("10.0.0.9", 4000))
    assert other.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200  # per address


def test_numeric_fields_are_strict(tmp_path: Path, mini_task: Path) -> None:
    client, _ = _client(tmp_path, mini_task, lambda r: "hello")
    bad = [({"n": 0}, "n"), ({"n": "7"}, "n"), ({"n": 2}, "n"), ({"n": True}, "n"), ({"max_tokens": "7"}, "max_tokens"),
           ({"max_tokens": 0}, "max_tokens"), ({"temperature": "0.5"}, "temperature"), ({"stream": "yes"}, "stream"),
           ({"seed": 10**30}, "seed"), ({"model": 7}, "model")]
    for fields, param in bad:
        r = client.post("/v1/chat/completions", json=_chat(**fields))
        assert r.status_code == 400, (fields, r.text)
        assert r.json()["error"]["param"] == param, fields
    for fields in ({"n": 1}, {"temperature": 1}, {"max_tokens": 5, "seed": 2**40, "top_p": 0.5}):
        r = client.post("/v1/chat/completions", json=_chat(**fields))
        assert r.status_code == 200, (fields, r.text)


PICK_TOML = """
name = "pick"
kind = "pick"
[prompt]
template = "{{ numbered_candidates }}\\nWhich one? Answer with its number or {{ none_label }}."
[pick]
candidates_field = "candidates"
none_label = "NONE"
"""


def test_pick_candidates_are_capped(tmp_path: Path) -> None:
    task = write_task(tmp_path / "pick", PICK_TOML)
    client, server = _client(tmp_path, task, lambda r: "1")
    r = client.post("/v1/tasks/pick", json={"input": {"candidates": [f"c{i}" for i in range(MAX_CANDIDATES + 1)]}})
    assert r.status_code == 400
    assert (r.json()["error"]["message"], r.json()["error"]["code"]) == (
        "65 candidates; this server scores at most 64 per request", "too_many_candidates")
    assert server.layers[0].backend.calls == 0
    ok = client.post("/v1/tasks/pick", json={"input": {"candidates": [f"c{i}" for i in range(MAX_CANDIDATES)]}})
    assert ok.status_code == 200 and ok.json()["answer"] == 1


# --- keys out of argv; a private log that keeps only what it is told ------------------------------------------------

def test_api_keys_from_a_file(tmp_path: Path, mini_task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONED_API_KEYS", "from-env")
    keys = tmp_path / "keys"
    keys.write_text("# serving keys\nfrom-file\n\n  second  \n")
    keys.chmod(0o600)
    client, _ = _client(tmp_path, mini_task, api_key_file=keys, api_keys=["from-argv"])
    assert client.app.state.server.cfg.api_keys == ["from-argv", "from-file", "second", "from-env"]
    for key in ("from-file", "second", "from-env"):
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer serving"}).status_code == 401
    with pytest.raises(UserError, match="cannot read it"):
        ServeConfig(target="m", api_key_file=tmp_path / "missing")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(UserError, match="no keys in it"):
        ServeConfig(target="m", api_key_file=tmp_path / "empty")


def test_cli_passes_the_new_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    import honed.serve
    from honed.cli import serve_cmd

    app = typer.Typer()
    app.callback()(lambda: None)  # keep `serve` a subcommand, as in `honed`
    serve_cmd.register(app)
    seen: list[ServeConfig] = []
    monkeypatch.setattr(honed.serve, "serve", lambda cfg, on_ready=None: seen.append(cfg))
    keys = tmp_path / "keys"
    keys.write_text("k-file\n")
    result = CliRunner().invoke(app, ["serve", "m", "--api-key-file", str(keys), "--allow-origin", "http://a:1",
                                      "--allow-origin", "http://b:2", "--allow-host", "box:8080",
                                      "--log-inputs", "hash"])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert (cfg.api_keys, cfg.allow_origins, cfg.allow_hosts, cfg.log_inputs) == (
        ["k-file"], ["http://a:1", "http://b:2"], ["box:8080"], "hash")


def test_log_is_private_with_rotated_files(tmp_path: Path, mini_task: Path) -> None:
    old = tmp_path / "log" / "requests.jsonl.1"
    old.parent.mkdir(parents=True)
    old.write_text("")
    old.chmod(0o644)  # left by an older honed
    client, server = _client(tmp_path, mini_task, log_max_mb=0.001)
    for i in range(6):
        assert client.post("/v1/tasks/mini", json={"input": {"text": f"message {i} " + "x" * 300}}).status_code == 200
    files = server.log.files()
    assert len(files) >= 3
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


@pytest.mark.parametrize("mode", ["full", "hash", "none"])
def test_log_inputs_keeps_what_it_says(tmp_path: Path, mini_task: Path, mode: str) -> None:
    client, server = _client(tmp_path, mini_task, log_inputs=mode)
    inputs = {"text": "my card 4111 was charged twice"}
    assert client.post("/v1/tasks/mini", json={"input": inputs}).status_code == 200
    assert client.post("/v1/chat/completions", json=_chat()).status_code == 200
    raw = server.log.path.read_text()
    task_rec, chat_rec = _records(server)
    assert task_rec.answer == "billing" and task_rec.output == "billing"
    if mode == "full":
        assert (task_rec.input, task_rec.input_hash) == (inputs, content_hash(inputs))
        assert "log_inputs" not in task_rec.signals
    elif mode == "hash":
        assert (task_rec.input, task_rec.input_hash, task_rec.signals["log_inputs"]) == ({}, content_hash(inputs),
                                                                                           "hash")
        assert (chat_rec.input, chat_rec.input_hash) == ({}, content_hash({"messages": [
            {"role": "user", "content": "hi"}]}))
    else:
        assert (task_rec.input, task_rec.input_hash, task_rec.signals["log_inputs"]) == ({}, content_hash({}), "none")
        assert chat_rec.input_hash == content_hash({})
    assert ("4111" in raw) is (mode == "full")


def test_harvest_reads_a_full_log(tmp_path: Path, mini_task: Path) -> None:
    from honed.data.harvest import HarvestRules, harvest, parse_rule

    client, server = _client(tmp_path, mini_task)
    for text in ("charged twice", "refund please"):
        assert client.post("/v1/tasks/mini", json={"input": {"text": text}}).status_code == 200
    result = harvest(load_task(mini_task), server.log.path, HarvestRules(rules=[parse_rule("train: escalated == false")]))
    assert sorted(i.inputs["text"] for i in result.train) == ["charged twice", "refund please"]
    assert {i.expected for i in result.train} == {"billing"}


def test_out_of_memory_is_503_and_the_server_keeps_serving(tmp_path: Path, mini_task: Path) -> None:
    calls = []

    def script(req: Request) -> str:
        calls.append(req)
        if len(calls) == 1:
            raise MemoryError
        return "billing"

    client, server = _client(tmp_path, mini_task, script)
    r = client.post("/v1/tasks/mini", json={"input": {"text": "x"}})
    assert (r.status_code, r.json()["error"]["code"]) == (503, "out_of_memory")
    assert client.post("/v1/tasks/mini", json={"input": {"text": "x"}}).status_code == 200
    assert len(_records(server)) == 1


def test_rate_limiter_forgets_refilled_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    from honed.serve import auth

    monkeypatch.setattr(auth, "MAX_BUCKETS", 3)
    now = [0.0]
    rl = RateLimiter(per_minute=2, clock=lambda: now[0])
    for who in ("a", "b", "c"):
        rl.acquire(who)
    now[0] = 30.0  # a, b, c have refilled
    rl.acquire("d")
    assert sorted(rl._buckets) == ["d"]
    rl.acquire("d")  # d is spent: it must be remembered
    for who in ("e", "f"):
        rl.acquire(who)
    rl.acquire("g")
    assert "d" in rl._buckets and rl.acquire("d") > 0

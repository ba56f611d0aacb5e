"""OpenAIBackend against a real `python -m llama_cpp.server` serving SmolLM2 on 127.0.0.1.

SmolLM2, not the tiny random model: these tests read how answers end (finish "stop" on a short answer, "cold"
for the opposite of hot, a JSON object that closes within 48 tokens), which only a model that ends its answers
shows; each answer here is a few tokens, so the real model costs seconds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from honed.backends._http import Stream
from honed.backends.llamacpp import LlamaCppBackend
from honed.backends.models import resolve_gguf
from honed.backends.openai import OpenAIBackend
from honed.errors import BackendUnavailable, ModelNotFound
from honed.types import Constraint, Message, Request, Sampling
from tests.conftest import LlamaServer as Server
from tests.conftest import free_port, start_llama_server, stop_llama_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEY = "honed-test-key"
LABELS = ("billing", "shipping", "NONE")
SORTER = "You sort customer messages. Answer with one label only: billing, shipping, or NONE."
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
CHATS = [  # with and without a system message (SmolLM2's template adds its default one)
    (Message("system", SORTER), Message("user", "I was charged twice for my order")),
    (Message("system", SORTER), Message("user", "Where is my parcel?")),
    (Message("user", "What is the opposite of hot? Answer with one word."),),
    (Message("user", "Say hi"),),
]


def _gguf() -> Path:
    try:
        return resolve_gguf("smollm2-135m")
    except ModelNotFound as exc:
        pytest.skip(str(exc))


def _start_server(log: Path, api_key: str | None = None) -> Server:
    return start_llama_server(_gguf(), log, api_key)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server wants an API key; the backend (and `honed eval`) read it from $OPENAI_API_KEY."""
    s = _start_server(tmp_path_factory.mktemp("server") / "server.log", api_key=KEY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", KEY)
        yield s
    stop_llama_server(s)


@pytest.fixture(scope="module")
def backend(server: Server) -> Iterator[OpenAIBackend]:
    with OpenAIBackend("smollm2", base_url=server.url) as b:
        yield b


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaCppBackend]:
    # One thread, as the server uses on 2 cores: with all cores, llama.cpp's OpenMP threads spin-wait when
    # another process takes a core, and a 24-token answer took 120 s on a busy 2-core machine.
    with LlamaCppBackend("smollm2-135m", n_ctx=2048, n_threads=1) as b:
        yield b


def ask(*messages: Message, max_tokens: int = 16, constraint: Constraint | None = None) -> Request:
    return Request(messages=tuple(messages), sampling=Sampling(max_tokens=max_tokens), constraint=constraint)


def test_detects_the_llamacpp_dialect_and_describes_the_model(backend: OpenAIBackend, server: Server) -> None:
    assert backend.dialect == "llamacpp"  # llama-cpp-python's /models says owned_by "me"
    assert backend.info.backend == "openai" and backend.info.sha256 is None and backend.info.path is None
    assert backend.info.details == {"base_url": server.url, "dialect": "llamacpp",
                                    "prompt_format": "server_chat_template"}
    assert backend.streams and not backend.in_process
    # llama-cpp-python serves one request at a time and drops a running answer when another one arrives.
    assert backend.max_concurrency == 1
    assert backend.cache_identity() == f"openai:smollm2:{server.url}"


def test_plain_request_answers_with_timings_and_counts(backend: OpenAIBackend) -> None:
    r = backend.generate([ask(Message("user", "What is the opposite of hot? Answer with one word."))])[0]
    assert r.finish_reason == "stop" and r.error is None
    assert "cold" in r.text.lower()
    assert r.ttft_s is not None and 0 < r.ttft_s <= r.latency_s < 60
    assert 0 < r.completion_tokens <= 16


def test_max_tokens_cuts_the_answer(backend: OpenAIBackend) -> None:
    r = backend.generate([ask(Message("user", "Count from 1 to 100, one number per line."), max_tokens=5)])[0]
    assert r.finish_reason == "length"
    assert 1 <= r.completion_tokens <= 5


def test_greedy_answers_equal_the_in_process_backend(backend: OpenAIBackend, llama: LlamaCppBackend) -> None:
    # Same GGUF, same rendered prompt (the server's Jinja2 formatter and honed's render_chat give the same
    # text for SmolLM2), same greedy decoding once the dialect switches off the server's repeat penalty and
    # top_k/min_p: the answers must be identical, character for character.
    requests = [ask(*chat, max_tokens=24) for chat in CHATS]
    served = backend.generate(requests)
    local = llama.generate(requests)
    assert [r.text for r in served] == [r.text for r in local]
    assert [r.finish_reason for r in served] == [r.finish_reason for r in local]
    for s, lo in zip(served, local):
        # No usage in llama-cpp-python's stream: one content delta ≈ one token; the in-process count also
        # includes the end-of-turn token.
        assert abs(s.completion_tokens - lo.completion_tokens) <= 2


def test_concurrent_callers_get_their_own_answers(backend: OpenAIBackend) -> None:
    # The server runs with its default --interrupt_requests True: without the backend's own limit, these
    # answers would cut each other off (as `honed eval --concurrency 2` did before the limit).
    requests = [ask(*chat, max_tokens=12) for chat in CHATS]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda r: backend.generate([r])[0], requests))
    assert all(r.error is None for r in concurrent), [r.error for r in concurrent]
    assert [(r.text, r.finish_reason) for r in concurrent] == \
        [(r.text, r.finish_reason) for r in backend.generate(requests)]


def test_json_schema_constraint_gives_valid_json(backend: OpenAIBackend) -> None:
    r = backend.generate([ask(Message("user", "Describe a person."), max_tokens=48,
                              constraint=Constraint("json_schema", schema=PERSON))])[0]
    assert r.finish_reason == "stop", r
    jsonschema.validate(json.loads(r.text), PERSON)


def test_choice_constraint_gives_one_of_the_choices(backend: OpenAIBackend) -> None:
    messages = (Message("system", SORTER), Message("user", "I was charged twice for my order"))
    free = backend.generate([ask(*messages)])[0]
    assert free.text not in LABELS  # SmolLM2 chats freely here: the constraint is what makes it a label
    constrained = backend.generate([ask(*messages, constraint=Constraint("choice", choices=LABELS))])[0]
    assert constrained.text in LABELS and constrained.finish_reason == "stop"


def test_openai_dialect_schema_is_refused_by_llama_cpp_python_with_a_clear_error(server: Server) -> None:
    with OpenAIBackend("smollm2", base_url=server.url, dialect="openai") as b:
        r = b.generate([ask(Message("user", "Describe a person."), constraint=Constraint("json_schema",
                                                                                       schema=PERSON))])[0]
    assert r.finish_reason == "error" and r.text == ""
    assert r.error is not None and "HTTP 500" in r.error and "json_object" in r.error  # the server's words


def test_a_prompt_longer_than_the_context_is_an_error_not_an_empty_answer(backend: OpenAIBackend) -> None:
    # llama-cpp-python answers HTTP 200 and then closes the stream without a finish reason.
    r = backend.generate([ask(Message("user", "hi " * 3000))])[0]
    assert r.finish_reason == "error"
    assert r.error is not None and "before the answer was complete" in r.error


def test_a_wrong_path_is_an_error_with_the_status_code(server: Server) -> None:
    with OpenAIBackend("smollm2", base_url=server.url) as b:
        b.base_url = server.url.removesuffix("/v1")  # /chat/completions without /v1: not a route there
        r = b.generate([ask(Message("user", "hi"))])[0]
    assert r.finish_reason == "error" and r.error is not None and r.error.startswith("HTTP 404")


def test_the_api_key_comes_from_the_named_environment_variable(server: Server,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(BackendUnavailable, match=r"HTTP 401.*\$OPENAI_API_KEY is not set"):
        OpenAIBackend("smollm2", base_url=server.url)
    monkeypatch.setenv("MY_KEY", KEY)
    with OpenAIBackend("smollm2", base_url=server.url, api_key_env="MY_KEY") as b:
        assert b.generate([ask(Message("user", "hi"), max_tokens=2)])[0].finish_reason == "length"


def test_a_dead_port_is_refused_at_construction() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendUnavailable) as exc:
        OpenAIBackend("smollm2", base_url=url)
    assert f"{url}/models" in str(exc.value) and "llama_cpp.server" in str(exc.value)


class _Watched(OpenAIBackend):
    """Says when the first content has arrived, so a test can kill the server mid-answer, not before."""

    streaming = threading.Event()

    def _read(self, lines: Iterator[str], stream: Stream) -> None:
        def tap() -> Iterator[str]:
            for line in lines:
                yield line
                if '"content"' in line:
                    self.streaming.set()

        super()._read(tap(), stream)


def test_a_server_that_dies_mid_answer_gives_an_error_response(tmp_path: Path) -> None:
    server = _start_server(tmp_path / "server.log")
    try:
        b = _Watched("smollm2", base_url=server.url)
        # A string that cannot end before max_tokens keeps the server streaming for tens of seconds.
        endless = ask(Message("user", "Write the letter a many times."), max_tokens=4000,
                      constraint=Constraint("json_schema", schema={"type": "string", "minLength": 20000}))
        result: list = []
        worker = threading.Thread(target=lambda: result.extend(b.generate([endless])))
        worker.start()
        assert b.streaming.wait(120), "no content streamed within 120 s"
        server.proc.kill()
        worker.join(30)
        assert not worker.is_alive()
        (r,) = result
        assert r.finish_reason == "error" and r.error is not None and server.url in r.error
        assert r.text.startswith('"')  # it died mid-answer: what had arrived is kept for the record
        server.proc.wait(10)
        t0 = time.perf_counter()
        after = b.generate([ask(Message("user", "hi"))])[0]  # and the next request is refused, not hung
        assert time.perf_counter() - t0 < 10
        # refused on a new connection, or found dead on the pooled keep-alive one (which the two are is a race of
        # the kernel's socket teardown, not honed's): either way the error names the failure and the server
        assert after.finish_reason == "error" and after.error is not None
        assert re.match(rf"(ConnectError|ReadError|RemoteProtocolError) talking to {re.escape(server.url)}",
                        after.error), after.error
        b.close()
    finally:
        stop_llama_server(server)


def test_honed_eval_through_the_openai_backend(server: Server, tmp_path: Path) -> None:
    example = REPO / "examples" / "classify"
    if not (example / "honed.toml").exists():
        pytest.skip("examples/classify/honed.toml is not there yet")
    try:
        import honed.evaluate.runner
    except ImportError as exc:
        pytest.skip(f"honed.evaluate.runner cannot import yet ({exc})")
    out = tmp_path / "result.json"
    honed = Path(sys.executable).with_name("honed")
    proc = subprocess.run([str(honed), "eval", str(example), "--backend", "openai", "--model", "smollm2",
                           "--base-url", server.url, "--limit", "3", "--concurrency", "2", "--constrained",
                           "--json", str(out)],
                          check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["model"]["backend"] == "openai" and doc["model"]["details"]["dialect"] == "llamacpp"
    assert doc["n_responses"] == 3 and doc["cache"]["misses"] == 3
    assert doc["settings"]["constrained"] is True and doc["settings"]["concurrency"] == 1
    # Every answer came back (no dropped streams) and, constrained, every one is a label.
    assert doc["failures"]["error"] == 0 and doc["failures"]["unparseable"] == 0

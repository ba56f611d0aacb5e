"""OllamaBackend against a real local HTTP server that speaks Ollama's native API (_ollama_server.py), backed
by the real SmolLM2 through llama_cpp: Ollama itself cannot be installed here. SmolLM2, not the tiny random
model: these tests read how an answer ends (done_reason "stop" and "length" both seen, a JSON object that closes
within its tokens), and only a model that ends its answers shows that; its answers here are a few tokens each."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import jsonschema
import pytest

from honed.backends._http import choice_schema
from honed.backends.llamacpp import LlamaCppBackend
from honed.backends.models import resolve_gguf
from honed.backends.ollama import OllamaBackend
from honed.errors import BackendUnavailable, ModelNotFound
from honed.types import Constraint, Message, Request, Sampling

from ._ollama_server import OllamaStandIn

pytestmark = pytest.mark.integration

SORTER = "You sort customer messages. Answer with one label only: billing, shipping, or NONE."
LABELS = ("billing", "shipping", "NONE")
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
CHATS = [
    (Message("system", SORTER), Message("user", "I was charged twice for my order")),
    (Message("user", "What is the opposite of hot? Answer with one word."),),
    (Message("user", "Say hi"),),
]


@pytest.fixture(scope="module")
def server() -> Iterator[OllamaStandIn]:
    try:
        gguf = resolve_gguf("smollm2-135m")
    except ModelNotFound as exc:
        pytest.skip(str(exc))
    with OllamaStandIn(gguf, name="smollm2:latest") as s:
        yield s


@pytest.fixture(scope="module")
def backend(server: OllamaStandIn) -> Iterator[OllamaBackend]:
    with OllamaBackend("smollm2", base_url=server.url) as b:
        yield b


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaCppBackend]:
    with LlamaCppBackend("smollm2-135m", n_ctx=2048, n_threads=1) as b:  # 1 thread: see test_openai_backend
        yield b


def ask(*messages: Message, max_tokens: int = 24, think: bool | None = None,
        constraint: Constraint | None = None) -> Request:
    return Request(messages=tuple(messages), sampling=Sampling(max_tokens=max_tokens, think=think),
                   constraint=constraint)


def test_answers_and_counts_equal_the_in_process_backend(backend: OllamaBackend,
                                                          llama: LlamaCppBackend) -> None:
    # The stand-in defaults to Ollama's top_k 40 / repeat_penalty 1.1; equality holds only because the backend
    # switches them off in `options`, so that greedy means greedy.
    requests = [ask(*chat) for chat in CHATS]
    served, local = backend.generate(requests), llama.generate(requests)
    assert [r.text for r in served] == [r.text for r in local]
    assert [(r.prompt_tokens, r.completion_tokens) for r in served] == \
        [(r.prompt_tokens, r.completion_tokens) for r in local]  # prompt_eval_count / eval_count
    assert [r.finish_reason for r in served] == [r.finish_reason for r in local]
    assert {r.finish_reason for r in served} == {"stop", "length"}  # done_reason read both ways
    for r in served:
        assert r.ttft_s is not None and 0 < r.ttft_s <= r.latency_s


def test_sampling_reaches_the_server_as_options(backend: OllamaBackend, server: OllamaStandIn) -> None:
    sampling = Sampling(max_tokens=3, temperature=0.7, top_p=0.9, seed=11, stop=("zzz",))
    r = backend.generate([Request(messages=CHATS[1], sampling=sampling)])[0]
    assert r.finish_reason == "length" and r.completion_tokens == 3  # done_reason "length", eval_count
    assert server.requests[-1]["options"] == {
        "temperature": 0.7, "top_p": 0.9, "seed": 11, "num_predict": 3, "stop": ["zzz"],
        "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
    assert server.requests[-1]["stream"] is True


def test_think_false_and_keep_alive_reach_the_server(backend: OllamaBackend, server: OllamaStandIn) -> None:
    backend.generate([ask(*CHATS[1], think=False)])
    assert server.requests[-1]["think"] is False and server.requests[-1]["keep_alive"] == "5m"
    backend.generate([ask(*CHATS[1])])
    assert "think" not in server.requests[-1]  # None: the server's default, so the flag is left out


def test_keep_alive_none_is_left_to_the_server(server: OllamaStandIn) -> None:
    with OllamaBackend("smollm2:latest", base_url=server.url, keep_alive=None) as b:
        assert b.generate([ask(*CHATS[1])])[0].finish_reason == "stop"
    assert "keep_alive" not in server.requests[-1]


def test_think_true_on_a_model_that_cannot_think_is_an_error(backend: OllamaBackend) -> None:
    r = backend.generate([ask(*CHATS[1], think=True)])[0]
    assert r.finish_reason == "error" and r.error is not None
    assert r.error.startswith("HTTP 400") and "does not support thinking" in r.error


def test_json_schema_is_sent_as_format_and_honoured(backend: OllamaBackend, server: OllamaStandIn) -> None:
    r = backend.generate([ask(Message("user", "Describe a person."), max_tokens=48,
                              constraint=Constraint("json_schema", schema=PERSON))])[0]
    assert server.requests[-1]["format"] == PERSON
    assert r.finish_reason == "stop"
    jsonschema.validate(json.loads(r.text), PERSON)


def test_choice_is_sent_as_an_enum_schema_and_unwrapped(backend: OllamaBackend,
                                                        server: OllamaStandIn) -> None:
    free = backend.generate([ask(*CHATS[0], max_tokens=16)])[0]
    assert free.text not in LABELS
    r = backend.generate([ask(*CHATS[0], constraint=Constraint("choice", choices=LABELS))])[0]
    assert server.requests[-1]["format"] == choice_schema(LABELS)
    assert r.text in LABELS and r.finish_reason == "stop"


def test_a_model_ollama_does_not_have_is_refused_with_the_pull_command(server: OllamaStandIn) -> None:
    with pytest.raises(ModelNotFound, match="ollama pull llama3"):
        OllamaBackend("llama3", base_url=server.url)


def test_no_server_is_refused_at_construction() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendUnavailable, match="ollama serve"):
        OllamaBackend("smollm2", base_url=f"http://127.0.0.1:{port}")

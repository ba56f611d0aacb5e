"""What the HTTP backends share: one pooled httpx client, the probe at construction, timing a streamed answer,
and turning every transport or HTTP failure into a Response with finish_reason "error".

A subclass says only what is different about its server: the request body (`_body`) and how to read the
stream (`_read`). `OpenAIBackend` reads Server-Sent Events, `OllamaBackend` reads NDJSON.
"""

from __future__ import annotations

import json
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from honed.backends.base import Backend
from honed.errors import BackendUnavailable
from honed.types import FinishReason, Request, Response

CHOICE_KEY = "answer"


def choice_schema(choices: Sequence[str]) -> dict[str, Any]:
    """A JSON schema whose only valid documents are {"answer": <one of choices>}.

    Servers that constrain by JSON schema but have no choice constraint (Ollama, OpenAI) get this; an object
    root is what OpenAI's strict mode requires. `unwrap_choice` turns the answer back into the bare choice.
    """
    return {"type": "object", "properties": {CHOICE_KEY: {"type": "string", "enum": list(choices)}},
            "required": [CHOICE_KEY], "additionalProperties": False}


def unwrap_choice(text: str) -> str:
    """{"answer": "x"} → "x"; anything else is returned unchanged, for the evaluator to judge."""
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    if isinstance(doc, dict) and isinstance(doc.get(CHOICE_KEY), str):
        return doc[CHOICE_KEY]
    return text


def error_message(response: httpx.Response) -> str:
    """The server's own words from an error body: OpenAI, FastAPI, Ollama and vLLM shapes, else the text."""
    body = response.text.strip()
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:500] or response.reason_phrase
    if isinstance(doc, dict):
        for key in ("error", "detail", "message"):
            value = doc.get(key)
            if isinstance(value, dict):
                value = value.get("message", value)
            if value:
                return str(value)[:500]
    return body[:500]


@dataclass
class Stream:
    """What one streamed answer accumulates while it is read."""

    t0: float = field(default_factory=time.perf_counter)
    pieces: list[str] = field(default_factory=list)
    ttft_s: float | None = None
    finish: FinishReason = "stop"
    finished: bool = False
    """The server said the answer is complete (a finish reason, `done`); a stream that stops short is not."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    on_text: Callable[[str], None] | None = None
    """Told each content delta as it arrives (`Backend.stream`)."""

    def add(self, text: str) -> None:
        """One content delta: the first non-empty one fixes the time to first token."""
        if text:
            if self.ttft_s is None:
                self.ttft_s = time.perf_counter() - self.t0
            self.pieces.append(text)
            if self.on_text is not None:
                self.on_text(text)


class HTTPBackend(Backend):
    """Base of the backends that talk to a model server. Thread-safe: the eval runner calls `generate` from
    several threads, and they share one connection pool of `max_concurrency` connections."""

    streams = True
    in_process = False

    def __init__(self, base_url: str, *, timeout: float, max_concurrency: int,
                 headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._max_concurrency = max_concurrency
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            headers=headers or {},
        )
        # Callers beyond the limit wait here, before the clock starts, not in the pool with the clock running.
        self._slots = threading.BoundedSemaphore(max_concurrency)

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    def _limit_concurrency(self, n: int) -> None:
        """Lower the number of requests in flight (for servers that serve one at a time)."""
        self._max_concurrency = min(self._max_concurrency, n)
        self._slots = threading.BoundedSemaphore(self._max_concurrency)

    def _probe(self, path: str, how_to_start: str) -> Any:
        """GET a cheap endpoint at construction; BackendUnavailable (saying how to fix it) if it fails."""
        url = self.base_url + path
        try:
            r = self._client.get(url, timeout=min(self._timeout, 10.0))
        except httpx.HTTPError as exc:
            self.close()
            raise BackendUnavailable(f"no server answers at {url} ({type(exc).__name__}: {exc}); "
                                     f"start one, e.g. {how_to_start}, or pass the right base_url") from None
        if r.status_code >= 400:
            self.close()
            raise BackendUnavailable(f"{url} answered HTTP {r.status_code}: {error_message(r)}")
        try:
            return r.json()
        except ValueError:
            self.close()
            raise BackendUnavailable(f"{url} did not answer JSON: is base_url right?") from None

    @abstractmethod
    def _body(self, request: Request) -> tuple[str, dict[str, Any]]:
        """(path under base_url, JSON body) for one request."""

    @abstractmethod
    def _read(self, lines: Iterator[str], stream: Stream) -> None:
        """Read the response's lines into `stream` (content, finish reason, counts, in-stream errors)."""

    def _text(self, request: Request, text: str) -> str:
        """Post-process the answer text (e.g. unwrap a choice sent as a JSON schema)."""
        if request.constraint is not None and request.constraint.kind == "choice":
            return unwrap_choice(text)
        return text

    def _one(self, request: Request) -> Response:
        with self._slots:
            return self._send(request)

    def stream(self, request: Request, on_text: Callable[[str], None]) -> Response:
        with self._slots:
            return self._send(request, on_text)

    def _send(self, request: Request, on_text: Callable[[str], None] | None = None) -> Response:
        path, body = self._body(request)
        url = self.base_url + path
        s = Stream(on_text=on_text)
        try:
            with self._client.stream("POST", url, json=body) as r:
                if r.status_code >= 400:
                    r.read()
                    s.error = f"HTTP {r.status_code} from {url}: {error_message(r)}"
                else:
                    self._read(r.iter_lines(), s)
                    if s.error is None and not s.finished:
                        # llama-cpp-python's server does this when the prompt exceeds its context: HTTP 200,
                        # then the stream just closes. Never count that as an (empty) answer.
                        s.error = (f"the stream from {url} ended before the answer was complete (no finish "
                                   "reason): the server failed mid-answer (its log says why, e.g. a prompt "
                                   "longer than its context) or dropped it for another request (llama-cpp-"
                                   "python's server does, unless started with --interrupt_requests False)")
        except httpx.TimeoutException as exc:
            s.error = f"{type(exc).__name__}: no answer from {url} within {self._timeout:g} s"
        except httpx.HTTPError as exc:  # refused, reset, the server died mid-stream
            s.error = f"{type(exc).__name__} talking to {url}: {str(exc) or 'connection lost'}"
        except (ValueError, TypeError, AttributeError) as exc:  # a line that is not JSON, or not the shape
            s.error = f"unreadable stream from {url}: {type(exc).__name__}: {exc}"
        text = "".join(s.pieces)
        latency = time.perf_counter() - s.t0
        if s.error is not None:
            return Response(text=text, finish_reason="error", prompt_tokens=s.prompt_tokens or 0,
                            completion_tokens=len(s.pieces), ttft_s=s.ttft_s, latency_s=latency,
                            error=s.error)
        return Response(
            text=self._text(request, text), finish_reason=s.finish, prompt_tokens=s.prompt_tokens or 0,
            # No usage from the server (llama-cpp-python's does not send it): one content delta ≈ one token.
            completion_tokens=s.completion_tokens if s.completion_tokens is not None else len(s.pieces),
            ttft_s=s.ttft_s, latency_s=latency)

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        return [self._one(r) for r in requests]

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()

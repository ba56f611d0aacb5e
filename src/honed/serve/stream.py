"""Streamed answers: text from a model's worker thread to the client as server-sent events, token by token.

A `Relay` carries the pieces a backend decodes (`Backend.stream`'s `on_text`, called in the worker thread) to
the event loop, and a stop flag back: once the client has gone, or the request's time has run out, the next
piece raises `StreamStopped` in the worker, so decoding ends within a token and the model is free for the next
request; a request still queued is dropped from the queue. `SSE` runs its `on_close` callbacks however the
stream ends (finished, client gone, error), which is where the request log's line and the metrics are written:
one whole line per streamed request, with the latency of the whole answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from honed.backends.base import StreamStopped

DONE = b"data: [DONE]\n\n"
POLL_S = 0.25
"""How often a stream waiting for its next piece checks whether the client is still there."""


def event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def chat_chunk(cid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None,
          extra: dict[str, Any] | None = None) -> bytes:
    """One `chat.completion.chunk` event, as the openai client reads it with `stream=True`."""
    return event({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})})


def error_event(message: str, kind: str, code: str) -> bytes:
    """An error after the stream began (the status line is sent already): the openai client raises it."""
    return event({"error": {"message": message, "type": kind, "param": None, "code": code}})


class Relay:
    """Pieces of text from a worker thread while `work` runs; `stop()` makes the worker's next piece raise."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.stopped = threading.Event()
        self.pieces: list[str] = []
        self.first_piece_unix: float | None = None
        self.last_piece_unix: float | None = None
        self.work: asyncio.Future[Any] | None = None
        self.t0 = time.perf_counter()
        self.logged = False
        """The request's log line is written (exactly one per streamed request)."""

    def push(self, text: str) -> None:
        """The backend's `on_text` (worker thread)."""
        if self.stopped.is_set():
            raise StreamStopped
        now = time.time()
        self.first_piece_unix = self.first_piece_unix or now
        self.last_piece_unix = now
        self.loop.call_soon_threadsafe(self.queue.put_nowait, text)

    def start(self, work: Awaitable[Any]) -> None:
        self.work = asyncio.ensure_future(work)

    def stop(self) -> None:
        self.stopped.set()
        if self.work is not None and not self.work.done():
            self.work.cancel()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    def result(self) -> Any:
        """What the work returned (call once `relay` has ended)."""
        assert self.work is not None
        return self.work.result()

    async def relay(self, request: HttpRequest, deadline: float) -> AsyncIterator[str]:
        """Each piece as it arrives, until the work is done; TimeoutError past `deadline` (monotonic),
        ConnectionAbortedError when the client has gone."""
        assert self.work is not None
        while True:
            if self.work.done() and self.queue.empty():  # every piece is queued before the work settles
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            get = asyncio.ensure_future(self.queue.get())
            done, _ = await asyncio.wait({get, self.work}, timeout=min(POLL_S, left),
                                         return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                self.pieces.append(get.result())
                yield self.pieces[-1]
                continue
            get.cancel()
            if not done and await request.is_disconnected():
                raise ConnectionAbortedError


class SSE(StreamingResponse):
    """A text/event-stream response whose `on_close` callbacks run once, however the stream ends."""

    def __init__(self, events: Callable[[SSE], AsyncIterator[bytes]]) -> None:
        """`events(self)`: the stream's events; it may set `outcome` as it ends."""
        super().__init__(events(self), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.outcome = 200
        """The status the metrics record: 200, 499 (client gone), 504 (timed out), 502/400/503 (model failed),
        500 (a bug)."""
        self.on_close: list[Callable[[], None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except ClientDisconnect:  # the client left mid-stream: nobody to answer, the close callbacks record it
            self.outcome = 499
        except (asyncio.CancelledError, OSError):  # the connection went (or the server is stopping)
            if self.outcome == 200:
                self.outcome = 499
            raise
        except Exception:
            if self.outcome == 200:
                self.outcome = 500
            raise
        finally:
            for fn in self.on_close:
                fn()

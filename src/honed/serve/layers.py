"""A layer of the cascade: a backend, the model it runs, that model's sha256, and the worker that feeds it.

An in-process llama.cpp model is not thread-safe, so it gets one worker thread with a queue: requests wait
their turn without holding the event loop, and `/health` and `/metrics` answer while a generation runs. A
request that times out while still queued is dropped from the queue (a generation already running cannot be
interrupted and finishes within its token budget). Upstream servers get a few threads.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from honed.backends import open_backend
from honed.backends.base import Backend
from honed.errors import UserError

T = TypeVar("T")


class QueueFull(Exception):
    """More requests are waiting for this model than the server accepts."""


@dataclass
class _Job:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    cancelled: bool = False


def _settle(job: _Job, ok: bool, value: Any) -> None:
    if job.future.done():  # the request timed out or its client went away
        return
    if ok:
        job.future.set_result(value)
    else:
        job.future.set_exception(value)


class Worker:
    """Threads that run one model's jobs, in arrival order."""

    def __init__(self, name: str, threads: int = 1, max_queue: int = 64) -> None:
        self.name = name
        self.max_queue = max_queue
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._loop, name=f"honed-{name}-{i}", daemon=True)
                         for i in range(threads)]
        self.busy = 0
        for t in self._threads:
            t.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancelled:
                continue
            self.busy += 1
            try:
                result: Any = job.fn()
                ok = True
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
                result, ok = exc, False
            finally:
                self.busy -= 1
            try:
                job.loop.call_soon_threadsafe(_settle, job, ok, result)
            except RuntimeError:  # the loop that asked has closed (server shutting down): nobody to tell
                pass

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on this worker; cancelling the awaiting task drops the job if it has not started."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(self.name)
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop.create_future(), loop)
        self._queue.put(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True
            raise

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


@dataclass
class Layer:
    """One model the server can answer with."""

    name: str
    """Its role in the cascade: "primary", "fallback", "fallback2", …"""
    model_id: str
    """The id clients use in /v1/models and chat requests."""
    spec: str
    backend: Backend
    worker: Worker
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str | None:
        return self.backend.info.sha256

    def close(self) -> None:
        self.worker.stop()
        self.backend.close()


def _split_remote(spec: str) -> tuple[str, str, str] | None:
    """`openai:URL#model` → ("openai", URL, model); None for a local model."""
    for kind in ("openai", "ollama"):
        if spec.startswith(kind + ":"):
            rest = spec[len(kind) + 1:]
            url, sep, model = rest.rpartition("#")
            if not sep or not url or not model:
                raise UserError(f"layer {spec!r}: expected {kind}:URL#model, e.g. {kind}:http://127.0.0.1:8000/v1#qwen")
            return kind, url, model
    return None


def open_layer(spec: str, name: str, *, n_ctx: int = 4096, n_threads: int | None = None, max_queue: int = 64,
               model_id: str | None = None) -> Layer:
    """Open a layer from a model spec: alias, .gguf path, `openai:URL#model` or `ollama:URL#model`.

    Upstream OpenAI-compatible servers read their API key from $OPENAI_API_KEY.
    """
    remote = _split_remote(spec)
    if remote is not None:
        kind, url, model = remote
        backend = open_backend(kind, model, base_url=url)
        threads = max(1, min(backend.max_concurrency, 8))
        return Layer(name, model_id or model, spec, backend, Worker(name, threads, max_queue), {"upstream": url})
    backend = open_backend("llamacpp", spec, n_ctx=n_ctx, n_threads=n_threads)
    default_id = spec if not spec.endswith(".gguf") else Path(spec).stem
    return Layer(name, model_id or default_id, spec, backend, Worker(name, 1, max_queue),
                 {"path": backend.info.path, "prompt_format": backend.info.details.get("prompt_format")})

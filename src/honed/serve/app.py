"""The ASGI app: OpenAI-compatible chat, the task route with its cascade, models, health, metrics.

Every route first passes the Host/Origin check (403, `honed.serve.origin`). Every /v1 route then goes through
`_guarded`: content type (415), API key (401; failures rate-limited per address), rate limit (429 +
Retry-After), then, under the per-request timeout (504), the body (413; 400 for anything unparseable or
nested too deep) and the handler. Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
so the official client raises its usual exceptions. No client-visible error carries a file path or an
upstream URL: details go to the server's own log.
Models run in their layers' worker threads: the event loop only awaits, so health and metrics answer while
a generation runs. Each answered request appends one line to the request log before its response is sent; a
streamed one (`stream: true`, `honed.serve.stream`) when its stream ends, however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from honed.data.io import input_fields
from honed.data.logs import LogRecord
from honed.errors import UserError
from honed.serve.auth import AuthError
from honed.serve.cascade import TaskAnswer, run_cascade
from honed.serve.chat import RequestError, completion_body, parse_chat, to_request
from honed.serve.config import ServeConfig
from honed.serve.layers import QueueFull
from honed.serve.limits import MAX_BODY_DEPTH, MAX_CANDIDATES, depth
from honed.serve.origin import is_json, refusal
from honed.serve.state import Server, open_server
from honed.serve.stream import DONE, SSE, Relay, chat_chunk, error_event, event
from honed.types import Response as ModelResponse

log = logging.getLogger("honed")
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
                415: "invalid_request_error", 429: "rate_limit_error", 502: "upstream_error", 503: "server_busy",
                504: "timeout_error"}
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"]+", re.IGNORECASE)
_PATH = re.compile(r"(?<![\w.:/-])(?:~|[A-Za-z]:)?/[^\s'\",;)]*[^\s'\",;):.]")
Handler = Callable[[Any, str], Awaitable[tuple[Response, str]]]


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "param": param,
                      "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def read_json(request: HttpRequest, limit: int) -> Any:
    """The request's JSON body, refusing more than `limit` bytes before reading them all (413)."""
    declared = request.headers.get("content-length")
    too_big = RequestError(413, f"request body is larger than this server's limit of {limit // 1024} KiB",
                           code="request_too_large")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise RequestError(400, "empty request body: expected a JSON object")
    try:
        payload = json.loads(raw)
    except UnicodeDecodeError:
        raise RequestError(400, "request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"invalid JSON in the request body: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}") from None
    except (ValueError, RecursionError):  # a 5000-digit integer, nesting past the parser's stack
        payload = None
    else:
        if depth(payload) <= MAX_BODY_DEPTH:
            return payload
    raise RequestError(400, f"invalid JSON in the request body: numbers are limited to 4300 digits and nesting to "
                       f"{MAX_BODY_DEPTH} levels", code="body_too_complex")


def public_message(server: Server, text: str) -> str:
    """`text` for a client: the server's task files named by their task, other paths and URLs elided."""
    for name, task in server.tasks.items():
        for where in (task.source, task.root):
            if where is not None:
                text = text.replace(str(where), f"task {name!r}")
    return _PATH.sub("<path>", _URL.sub("<url>", text))


def _log(server: Server, record: LogRecord) -> None:
    server.log.write(record)
    server.metrics.log_lines.inc()


def _rate_limited(server: Server, wait: float) -> RequestError:
    return RequestError(429, f"rate limit of {server.cfg.rate_limit:g} requests per minute reached; retry in "
                        f"{wait:g} s", code="rate_limit_exceeded", headers={"Retry-After": f"{wait:g}"})


def _identify(server: Server, request: HttpRequest) -> str:
    """The caller's rate-limit identity; wrong keys spend their address's budget, and an address that has spent
    it gets 429 before its key is even compared."""
    client = request.client.host if request.client else "unknown"
    failures = f"authfail:{client}"
    if server.keys.required and (wait := server.limiter.acquire(failures, take=False)):
        raise _rate_limited(server, wait)
    try:
        return server.keys.identity(request.headers.get("authorization"), request.headers.get("x-api-key"), client)
    except AuthError:
        server.limiter.acquire(failures)
        raise


async def _guarded(server: Server, request: HttpRequest, route: str, handler: Handler,
                   body: bool = True) -> Response:
    """Content type, auth, rate limit, then body and handler under the timeout, and metrics, around one call."""
    t0 = time.perf_counter()
    server.metrics.in_flight.inc()
    status, layer, streaming = 500, "-", False

    async def call() -> tuple[Response, str]:
        payload = await read_json(request, server.cfg.max_body_kb * 1024) if body else None
        return await handler(payload, uuid.uuid4().hex)

    try:
        if body and not is_json(request.headers.get("content-type")):
            raise RequestError(415, "send the body as JSON with the header 'Content-Type: application/json'",
                               code="unsupported_media_type")
        wait = server.limiter.acquire(_identify(server, request))
        if wait:
            raise _rate_limited(server, wait)
        # The body is read under the timeout too: a client trickling its body holds no slot past it.
        response, layer = await asyncio.wait_for(call(), server.cfg.timeout_s)
        status = response.status_code
        if isinstance(response, SSE):  # the answer is still being decoded: count it when the stream ends
            streaming = True
            response.on_close.append(lambda: _done(server, route, response.outcome, layer, t0))
        return response
    except AuthError as exc:
        status = 401
        return error_response(401, str(exc), code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    except RequestError as exc:
        status = exc.status
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code, headers=exc.headers)
    except UserError as exc:  # e.g. the task's prompt template needs a field the input lacks
        status = 400
        log.info("400 for a %s request: %s", route, exc)
        return error_response(400, public_message(server, str(exc)))
    except TimeoutError:
        status = 504
        return error_response(504, f"no answer within {server.cfg.timeout_s:g} s (the model may be busy); "
                              "queued work for this request was dropped", code="timeout")
    except MemoryError:  # a request that got past the bounds and still asked too much: refuse it, keep serving
        status = 503
        log.error("out of memory answering a %s request", route)
        return error_response(503, "the server ran out of memory for this request", code="out_of_memory")
    except QueueFull as exc:
        status = 503
        return error_response(503, f"too many requests waiting for the {exc} model; retry shortly",
                              code="queue_full", headers={"Retry-After": "1"})
    finally:
        if not streaming:
            _done(server, route, status, layer, t0)


def _done(server: Server, route: str, status: int, layer: str, t0: float) -> None:
    server.metrics.in_flight.dec()
    server.metrics.observe(route, status, layer, time.perf_counter() - t0)


def _task_inputs(server: Server, name: str, payload: Any) -> tuple[Any, dict[str, Any]]:
    task = server.tasks.get(name)
    if task is None:
        known = ", ".join(sorted(server.tasks)) or "none (start the server with --task DIR or a package)"
        raise RequestError(404, f"unknown task {name!r}; this server has: {known}", code="unknown_task")
    if not isinstance(payload, dict) or set(payload) != {"input"} or not isinstance(payload["input"], dict):
        raise RequestError(400, 'expected a body {"input": {...the task\'s input fields...}}', param="input")
    inputs = payload["input"]
    cands = inputs.get(task.spec.pick.candidates_field) if task.spec.pick else None
    if isinstance(cands, list) and len(cands) > MAX_CANDIDATES:
        raise RequestError(400, f"{len(cands)} candidates; this server scores at most {MAX_CANDIDATES} per request",
                           param="input", code="too_many_candidates")
    missing = [f for f in input_fields(task) if f not in inputs]
    if missing:
        raise RequestError(400, f"input lacks {missing}, which task {name!r} needs (its fields: "
                           f"{input_fields(task)})", param="input")
    return task, inputs


async def _answer_task(server: Server, task: Any, inputs: dict[str, Any], request_id: str) -> tuple[TaskAnswer,
                                                                                                     float]:
    t0 = time.perf_counter()
    result = await run_cascade(server.layers, task, inputs, server.cfg)
    latency_ms = (time.perf_counter() - t0) * 1000
    _record_task(server, task, inputs, result, latency_ms, request_id)
    return result, latency_ms


def _record_task(server: Server, task: Any, inputs: dict[str, Any], result: TaskAnswer, latency_ms: float,
                 request_id: str, **signals: Any) -> None:
    """The task answer's metrics and its one log line."""
    if result.signals.get("escalated"):
        server.metrics.escalations.labels(task.name, str(result.signals.get("reason"))).inc()
    _log(server, LogRecord.new(task=task.name, inputs=inputs, output=result.output, answer=result.answer,
                               layer=result.layer.name, model=result.layer.model_id,
                               model_sha256=result.layer.sha256, latency_ms=latency_ms,
                               signals={**result.signals, **signals}, request_id=request_id))


def _task_body(task: Any, result: TaskAnswer, request_id: str, latency_ms: float) -> dict[str, Any]:
    return {"task": task.name, "answer": result.answer, "output": result.output, "layer": result.layer.name,
            "valid": result.valid, "signals": result.signals, "request_id": request_id,
            "model": result.layer.model_id, "model_sha256": result.layer.sha256, "latency_ms": round(latency_ms, 1)}


def build_routes(server: Server) -> list[Route]:
    async def task_route(request: HttpRequest) -> Response:
        name = request.path_params["task"]

        async def handle(payload: Any, request_id: str) -> tuple[Response, str]:
            stream = isinstance(payload, dict) and payload.get("stream") is True
            if stream:  # {"input": …, "stream": true}: {"delta": text} events, then the task's answer as an event
                payload = {k: v for k, v in payload.items() if k != "stream"}
            task, inputs = _task_inputs(server, name, payload)
            if stream:
                return _stream_task(task, inputs, request, request_id, lambda t: event({"delta": t}),
                                    lambda result, ms: event(_task_body(task, result, request_id, ms)))
            result, latency_ms = await _answer_task(server, task, inputs, request_id)
            return JSONResponse(_task_body(task, result, request_id, latency_ms)), result.layer.name

        return await _guarded(server, request, "task", handle)

    async def chat_route(request: HttpRequest) -> Response:
        async def handle(payload: Any, request_id: str) -> tuple[Response, str]:
            req = parse_chat(payload)
            cid = f"chatcmpl-{request_id}"
            if req.stream:
                streamed = _stream_chat_task if req.model.startswith("task:") else _stream_model
                return streamed(req, request, request_id, cid)
            if req.model.startswith("task:"):
                body, layer = await _chat_task(req, request_id, cid)
            else:
                body, layer = await _chat_model(req, request_id, cid)
            return JSONResponse(body), layer

        return await _guarded(server, request, "chat", handle)

    def _task_of(req: Any) -> tuple[Any, dict[str, Any]]:
        """`model="task:NAME"`: the last user message is the task's input fields as a JSON object."""
        text = next((m.content for m in reversed(req.messages) if m.role == "user"), None)
        try:
            inputs = json.loads(text) if isinstance(text, str) else None
        except (ValueError, RecursionError):  # not JSON, or a number or nesting past the parser's limits
            inputs = None
        if not isinstance(inputs, dict) or depth(inputs) > MAX_BODY_DEPTH:
            raise RequestError(400, "for model 'task:NAME' the last user message must be a JSON object of the "
                               "task's input fields", param="messages")
        return _task_inputs(server, req.model[len("task:"):], {"input": inputs})

    def _task_content(result: TaskAnswer) -> tuple[str, str]:
        """(message content, finish reason) of a task's answer as a chat completion."""
        answer = result.answer if isinstance(result.answer, str) else json.dumps(result.answer, ensure_ascii=False)
        finish = "length" if result.attempts[-1].response.finish_reason == "length" else "stop"
        return (answer if result.valid else result.output), finish

    async def _chat_task(req: Any, request_id: str, cid: str) -> tuple[dict[str, Any], str]:
        task, inputs = _task_of(req)
        result, latency_ms = await _answer_task(server, task, inputs, request_id)
        content, finish = _task_content(result)
        body = completion_body(cid, req.model, content, finish, result.attempts[-1].response,
                               {"honed": _task_body(task, result, request_id, latency_ms)})
        return body, result.layer.name

    def _layer_request(req: Any) -> tuple[Any, Any]:
        """The layer a chat request names and the request to send it."""
        layer = server.layer_for_model(req.model)
        if layer is None:
            known = ", ".join([la.model_id for la in server.layers] + [f"task:{t}" for t in server.tasks])
            raise RequestError(404, f"unknown model {req.model!r}; this server has: {known}", param="model",
                               code="model_not_found")
        hreq = to_request(req, server.cfg.chat_max_tokens)
        if hreq.constraint is not None and not layer.backend.supports_schema:
            raise RequestError(400, f"the {layer.name} model cannot constrain output to a JSON schema",
                               param="response_format")
        return layer, hreq

    def _chat_record(layer: Any, hreq: Any, resp: Any, latency_ms: float, request_id: str,
                     **signals: Any) -> LogRecord:
        return LogRecord.new(
            task="chat", inputs={"messages": [m.as_dict() for m in hreq.messages]}, output=resp.text, answer=None,
            layer=layer.name, model=layer.model_id, model_sha256=layer.sha256, latency_ms=latency_ms,
            request_id=request_id, signals={"finish_reason": resp.finish_reason, "prompt_tokens": resp.prompt_tokens,
                                            "completion_tokens": resp.completion_tokens, **signals})

    def _model_failed(layer: Any, resp: Any) -> RequestError:
        log.warning("the %s model (%s) could not answer a chat request: %s", layer.name, layer.spec, resp.error)
        if not layer.backend.in_process:
            return RequestError(502, f"the upstream server of the {layer.name} model could not answer; the "
                                "server's log has the details", code="upstream_error")
        return RequestError(400, f"the model could not answer: {public_message(server, str(resp.error))}")

    async def _chat_model(req: Any, request_id: str, cid: str) -> tuple[dict[str, Any], str]:
        layer, hreq = _layer_request(req)
        t0 = time.perf_counter()
        resp = (await layer.worker.run(lambda: layer.backend.generate([hreq])))[0]
        latency_ms = (time.perf_counter() - t0) * 1000
        if resp.finish_reason == "error":
            raise _model_failed(layer, resp)
        _log(server, _chat_record(layer, hreq, resp, latency_ms, request_id))
        return completion_body(cid, layer.model_id, resp.text, resp.finish_reason, resp), layer.name

    def _streamed(relay: Relay, events: Callable[[SSE], AsyncIterator[bytes]],
                  on_stopped: Callable[[str], None]) -> SSE:
        """The SSE response over `events(response)`; when it ends before `events` logged its line (the client
        left, the time ran out), decoding is stopped and `on_stopped(why)` writes the line."""
        response = SSE(events)

        def close() -> None:
            relay.stop()
            if not relay.logged:  # ended before its answer: the client left (a clean end is how some servers
                relay.logged = True  # report a disconnect), the time ran out, or the model failed
                if response.outcome == 200:
                    response.outcome = 499
                on_stopped({499: "client_disconnected", 504: "timeout"}.get(response.outcome, "error"))

        response.on_close.append(close)
        return response

    async def _content(relay: Relay, http: HttpRequest, response: SSE,
                       to_chunk: Callable[[str], bytes]) -> AsyncIterator[bytes]:
        """A chunk per piece `relay` receives, until its work is done; a timeout becomes an error event and
        `response.outcome` says how it ended."""
        try:
            async for piece in relay.relay(http, time.monotonic() + server.cfg.timeout_s):
                yield to_chunk(piece)
        except TimeoutError:
            response.outcome = 504
            yield error_event(f"no complete answer within {server.cfg.timeout_s:g} s; decoding was stopped",
                              "timeout_error", "timeout")
        except ConnectionAbortedError:
            response.outcome = 499

    def _stream_model(req: Any, http: HttpRequest, request_id: str, cid: str) -> tuple[Response, str]:
        """A chat model's answer streamed as it is decoded; the log line is written when the answer is complete
        (or, for a client that left, with what was decoded by then)."""
        layer, hreq = _layer_request(req)
        if layer.worker.waiting >= layer.worker.max_queue:
            raise QueueFull(layer.name)
        relay, created = Relay(), int(time.time())
        relay.start(layer.worker.run(lambda: layer.backend.stream(hreq, relay.push)))

        def stopped(why: str) -> None:
            resp = ModelResponse(text=relay.text, finish_reason="error")
            _log(server, _chat_record(layer, hreq, resp, relay.elapsed_ms(), request_id, stream=True, stopped=why))

        async def events(response: SSE) -> AsyncIterator[bytes]:
            yield chat_chunk(cid, layer.model_id, created, {"role": "assistant", "content": ""})
            async for part in _content(relay, http, response,
                                       lambda t: chat_chunk(cid, layer.model_id, created, {"content": t})):
                yield part
            if response.outcome != 200:
                return
            resp = relay.result()
            relay.logged = True
            if resp.finish_reason == "error":
                err = _model_failed(layer, resp)
                response.outcome = err.status
                _log(server, _chat_record(layer, hreq, resp, relay.elapsed_ms(), request_id, stream=True))
                yield error_event(err.message, _ERROR_TYPES.get(err.status, "server_error"), err.code or "error")
                return
            _log(server, _chat_record(layer, hreq, resp, relay.elapsed_ms(), request_id, stream=True,
                                      last_token_unix=relay.last_piece_unix))
            usage = completion_body(cid, layer.model_id, "", resp.finish_reason, resp)["usage"]
            yield chat_chunk(cid, layer.model_id, created, {}, resp.finish_reason, {"usage": usage})
            yield DONE

        return _streamed(relay, events, stopped), layer.name

    def _stream_task(task: Any, inputs: dict[str, Any], http: HttpRequest, request_id: str,
                     content: Callable[[str], bytes], final: Callable[[TaskAnswer, float], bytes],
                     opening: bytes | None = None) -> tuple[Response, str]:
        """A task's answer streamed: the primary's text as it is decoded (`content` chunks), then validation,
        confidence and, if it escalates, the next layers; the `final` event carries the verdict (the answer that
        stands, its layer, validity, signals), which replaces the streamed text when the cascade escalated."""
        primary = server.layers[0]
        if primary.worker.waiting >= primary.worker.max_queue:
            raise QueueFull(primary.name)
        relay = Relay()
        relay.start(run_cascade(server.layers, task, inputs, server.cfg, on_text=relay.push))

        def stopped(why: str) -> None:
            _log(server, LogRecord.new(task=task.name, inputs=inputs, output=relay.text, answer=None,
                                       layer=primary.name, model=primary.model_id, model_sha256=primary.sha256,
                                       latency_ms=relay.elapsed_ms(), request_id=request_id,
                                       signals={"stream": True, "stopped": why}))

        async def events(response: SSE) -> AsyncIterator[bytes]:
            if opening is not None:
                yield opening
            async for part in _content(relay, http, response, content):
                yield part
            if response.outcome != 200:
                return
            try:
                result = relay.result()
            except (UserError, QueueFull) as exc:
                response.outcome = 400 if isinstance(exc, UserError) else 503
                yield error_event(public_message(server, str(exc)) if isinstance(exc, UserError) else
                                  f"too many requests waiting for the {exc} model; retry shortly",
                                  _ERROR_TYPES[response.outcome], "task_failed")
                return
            relay.logged = True
            latency_ms = relay.elapsed_ms()
            _record_task(server, task, inputs, result, latency_ms, request_id, stream=True,
                         last_token_unix=relay.last_piece_unix)
            yield final(result, latency_ms)
            yield DONE

        return _streamed(relay, events, stopped), primary.name

    def _stream_chat_task(req: Any, http: HttpRequest, request_id: str, cid: str) -> tuple[Response, str]:
        task, inputs = _task_of(req)
        created = int(time.time())

        def final(result: TaskAnswer, latency_ms: float) -> bytes:
            text, finish = _task_content(result)
            usage = completion_body(cid, req.model, text, finish, result.attempts[-1].response)["usage"]
            return chat_chunk(cid, req.model, created, {}, finish,
                              {"usage": usage, "honed": _task_body(task, result, request_id, latency_ms)})

        return _stream_task(task, inputs, http, request_id,
                            lambda t: chat_chunk(cid, req.model, created, {"content": t}), final,
                            chat_chunk(cid, req.model, created, {"role": "assistant", "content": ""}))

    async def models_route(request: HttpRequest) -> Response:
        async def handle(_: Any, __: str) -> tuple[Response, str]:
            created = int(server.started)
            data = [{"id": la.model_id, "object": "model", "created": created, "owned_by": "honed",
                     "honed": {"layer": la.name, "sha256": la.sha256, **la.details}} for la in server.layers]
            data += [{"id": f"task:{name}", "object": "model", "created": created, "owned_by": "honed",
                      "honed": {"kind": t.kind, "route": f"/v1/tasks/{name}"}} for name, t in server.tasks.items()]
            return JSONResponse({"object": "list", "data": data}), "-"

        return await _guarded(server, request, "models", handle, body=False)

    async def health(_: HttpRequest) -> Response:
        return JSONResponse({
            "status": "ok", "uptime_s": round(time.time() - server.started, 1),
            "models": {la.name: {"id": la.model_id, "sha256": la.sha256, "waiting": la.worker.waiting,
                                 "busy": la.worker.busy} for la in server.layers},
            "tasks": sorted(server.tasks), "auth": server.keys.required,
        })

    async def metrics(request: HttpRequest) -> Response:
        async def handle(_: Any, __: str) -> tuple[Response, str]:
            return Response(server.metrics.render(), media_type=server.metrics.content_type), "-"

        return await _guarded(server, request, "metrics", handle, body=False)

    return [
        Route("/v1/chat/completions", chat_route, methods=["POST"]),
        Route("/v1/tasks/{task}", task_route, methods=["POST"]),
        Route("/v1/models", models_route, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def app_for(server: Server, close_on_shutdown: bool = False) -> Starlette:
    """The ASGI app over an opened server; with `close_on_shutdown`, its models close when the app stops."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:
            server.close()

    async def http_error(_: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, exc.detail or "error")

    async def crash(request: HttpRequest, exc: Exception) -> Response:
        ref = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error (reference {ref}); the server's log has the details")

    app = Starlette(routes=build_routes(server), exception_handlers={HTTPException: http_error, Exception: crash},
                    middleware=[Middleware(OriginCheck, server=server)], lifespan=lifespan)
    app.state.server = server
    return app


class OriginCheck:
    """Refuse (403) a request whose Host is not this server's address or whose Origin is not allowed, before any
    route, auth, body or log sees it (see `honed.serve.origin`)."""

    def __init__(self, app: ASGIApp, server: Server) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            cfg = self.server.cfg
            bound = scope.get("server")  # the socket's real port, also when --port 0 picked one
            port = bound[1] if bound and bound[1] else cfg.port
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            why = refusal(headers, cfg.host, port, cfg.allow_hosts, cfg.allow_origins)
            if why is not None:
                await error_response(403, why, code="origin_not_allowed")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(config: ServeConfig) -> Starlette:
    """Open the models and tasks of `config` and return the ASGI app (models close when the app shuts down)."""
    return app_for(open_server(config), close_on_shutdown=True)

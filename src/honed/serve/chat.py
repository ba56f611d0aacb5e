"""OpenAI chat-completions schema ↔ honed's Request/Response: validation, translation, response bodies.

Only what a single local model can honour is accepted; anything else is a 400 that names the field
(n > 1, tools, images), never silently ignored. Fields are typed strictly: `"n": "7"` or `"max_tokens": true`
is a 400, not a guess. A `response_format` schema is measured against `honed.serve.limits` before anything
compiles it.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from honed.serve.limits import LimitExceeded, check_schema
from honed.types import Constraint, Message, Request, Response, Sampling


class RequestError(Exception):
    """A request the server cannot honour: becomes a 4xx in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields of POST /v1/chat/completions that honed reads; other OpenAI fields are accepted and unused."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = False
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None


def validation_message(exc: ValidationError) -> tuple[str, str | None]:
    """All of a body's field errors in one line, and the first field's name (OpenAI's `param`)."""
    parts, first = [], None
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        first = first or loc
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts), first


def parse_chat(body: Any) -> ChatRequest:
    try:
        req = ChatRequest.model_validate(body)
    except ValidationError as exc:
        message, param = validation_message(exc)
        raise RequestError(400, f"invalid chat request: {message}", param=param) from None
    if req.n is not None and req.n != 1:
        raise RequestError(400, "n must be 1: this server returns one choice per request", param="n")
    if req.tools:
        raise RequestError(400, "tools are not supported by this server", param="tools")
    return req


def message_text(msg: ChatMessage, index: int) -> str:
    if msg.content is None:
        return ""
    if isinstance(msg.content, str):
        return msg.content
    texts = []
    for part in msg.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise RequestError(400, f"messages[{index}].content: only text parts are supported, got "
                               f"type {part.get('type')!r}", param=f"messages.{index}.content")
        texts.append(part["text"])
    return "".join(texts)


def to_messages(req: ChatRequest) -> tuple[Message, ...]:
    out = []
    for i, m in enumerate(req.messages):
        role = "system" if m.role == "developer" else m.role
        out.append(Message(role, message_text(m, i)))  # type: ignore[arg-type]
    return tuple(out)


def _bounded(schema: dict[str, Any]) -> Constraint:
    try:
        check_schema(schema)
    except LimitExceeded as exc:
        raise RequestError(400, f"response_format: {exc}", param="response_format",
                           code="schema_too_large") from None
    return Constraint("json_schema", schema=schema)


def constraint_of(req: ChatRequest) -> Constraint | None:
    """response_format → a JSON-schema constraint ({"type": "json_object"} → any JSON object), within the
    bounds of `honed.serve.limits`."""
    rf = req.response_format
    if not rf or rf.get("type") in (None, "text"):
        return None
    if rf.get("type") == "json_object":
        schema = rf.get("schema") if isinstance(rf.get("schema"), dict) else {"type": "object"}
        return _bounded(schema)
    if rf.get("type") == "json_schema":
        spec = rf.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise RequestError(400, "response_format.json_schema.schema must be a JSON Schema object",
                               param="response_format")
        return _bounded(schema)
    raise RequestError(400, f"response_format.type {rf.get('type')!r} is not supported: use text, json_object "
                       "or json_schema", param="response_format")


def to_request(req: ChatRequest, max_tokens_cap: int) -> Request:
    max_tokens = req.max_completion_tokens or req.max_tokens or max_tokens_cap
    if max_tokens > max_tokens_cap:
        raise RequestError(400, f"max_tokens {max_tokens} is above this server's limit of {max_tokens_cap}",
                           param="max_tokens")
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    temperature = 1.0 if req.temperature is None else req.temperature  # OpenAI's default
    seed = req.seed if req.seed is not None else (0 if temperature == 0 else secrets.randbelow(2**31))
    sampling = Sampling(max_tokens=max_tokens, temperature=temperature, top_p=req.top_p or 1.0, seed=seed, stop=stop)
    return Request(to_messages(req), sampling, constraint_of(req))


def completion_body(request_id: str, model: str, content: str, finish: str, usage: Response | None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": request_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish,
                     "logprobs": None}],
        "usage": {"prompt_tokens": usage.prompt_tokens if usage else 0,
                  "completion_tokens": usage.completion_tokens if usage else 0,
                  "total_tokens": (usage.prompt_tokens + usage.completion_tokens) if usage else 0},
    }
    if extra:
        body.update(extra)
    return body


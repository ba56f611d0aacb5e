"""Any OpenAI-compatible chat server: llama.cpp (`llama-server`, `python -m llama_cpp.server`), vLLM,
LM Studio, OpenAI itself. The server applies the model's chat template, so honed cannot see the prompt text
(`Response.prompt_text` stays None) or the model file (`ModelInfo.sha256` is None).

Servers disagree on the parts of the API that matter here, so the request is written in a *dialect*:

- `llamacpp`: JSON schema as `response_format {"type": "json_object", "schema": …}`, choice as a GBNF
  `grammar`; top_k 0, min_p 0, repeat_penalty 1.
- `vllm` (≥ 0.10.2): `structured_outputs {"json": …}` or `{"choice": […]}`; top_k -1, min_p 0,
  repetition_penalty 1.
- `vllm-legacy` (< 0.12): `guided_json` or `guided_choice`; sampling as `vllm`.
- `openai`: `response_format {"type": "json_schema", "json_schema": {…, "strict": true}}`; a choice becomes
  the schema {"answer": {"enum": choices}} and the bare choice is unwrapped from the answer.

The sampling extras make `Sampling` mean the same thing everywhere: llama.cpp servers default to top_k 40,
min_p 0.05 and (llama-cpp-python) repeat_penalty 1.1, and vLLM applies the model's generation_config.json;
without them "greedy" on a server is not the greedy of the in-process backend. llama-cpp-python's server
answers HTTP 500 to OpenAI's `{"type":"json_schema"}`, hence its own dialect. `Sampling.think` goes out as
`chat_template_kwargs {"enable_thinking": …}` (Qwen3-style templates) to every dialect but `openai`.

`dialect="auto"` asks `GET /models`: `owned_by` "vllm" → vllm; "me" (llama-cpp-python) or "llamacpp"
(llama-server) → llamacpp; anything else → openai, the standard that LM Studio, Ollama's /v1 and OpenAI
accept.

llama-cpp-python's server answers one request at a time and, by default, drops the answer it is streaming when
another request arrives: against it `max_concurrency` is 1, whatever was asked (a queue on the server would
only add its wait to the measured latency).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from honed.backends._http import HTTPBackend, Stream, choice_schema
from honed.backends.llamacpp import choice_grammar  # a pure function: llama_cpp is imported by the class only
from honed.errors import BackendUnavailable, UserError
from honed.types import ModelInfo, Request

DIALECTS = ("auto", "llamacpp", "vllm", "vllm-legacy", "openai")
_OWNERS = {"vllm": "vllm", "me": "llamacpp", "llamacpp": "llamacpp"}
_START = "python -m llama_cpp.server --model model.gguf --port 8000 (or vllm serve MODEL)"


class OpenAIBackend(HTTPBackend):
    """A model behind `POST {base_url}/chat/completions`, streamed (Server-Sent Events) to time the first
    token.

    The API key, when the server wants one, is read from the environment variable `api_key_env`.
    """

    name = "openai"
    supports_schema = True
    supports_choice = True

    def __init__(self, model: str, *, base_url: str = "http://127.0.0.1:8000/v1",
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 120, max_concurrency: int = 8,
                 dialect: str = "auto") -> None:
        if dialect not in DIALECTS:
            raise UserError(f"unknown dialect {dialect!r} for the openai backend: expected one of "
                            f"{', '.join(DIALECTS)}")
        key = os.environ.get(api_key_env)
        super().__init__(base_url, timeout=timeout, max_concurrency=max_concurrency,
                         headers={"Authorization": f"Bearer {key}"} if key else None)
        try:
            models = self._probe("/models", _START)
        except BackendUnavailable as exc:
            if "HTTP 401" in str(exc) or "HTTP 403" in str(exc):
                where = f"${api_key_env} is {'set but refused' if key else 'not set'}"
                raise BackendUnavailable(f"{exc} ({where}: put the server's API key there)") from None
            raise
        self.dialect = dialect if dialect != "auto" else _detect(models)
        if "me" in _owners(models):
            self._limit_concurrency(1)
        self.model = model
        self.info = ModelInfo(name=model, backend=self.name, path=None, sha256=None,
                              details={"base_url": self.base_url, "dialect": self.dialect,
                                       "prompt_format": "server_chat_template"})

    def _body(self, request: Request) -> tuple[str, dict[str, Any]]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model, "messages": [m.as_dict() for m in request.messages],
            "max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed,
            "stream": True, "stream_options": {"include_usage": True},
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if self.dialect == "llamacpp":
            body.update(top_k=0, min_p=0.0, repeat_penalty=1.0)
        elif self.dialect.startswith("vllm"):
            body.update(top_k=-1, min_p=0.0, repetition_penalty=1.0)
        if s.think is not None and self.dialect != "openai":
            body["chat_template_kwargs"] = {"enable_thinking": s.think}  # Qwen3-style templates read this
        c = request.constraint
        if c is None:
            return "/chat/completions", body
        if self.dialect == "llamacpp":
            if c.kind == "json_schema":
                body["response_format"] = {"type": "json_object", "schema": c.schema}
            else:
                body["grammar"] = choice_grammar(c.choices)
        elif self.dialect == "vllm":
            body["structured_outputs"] = (
                {"json": c.schema} if c.kind == "json_schema" else {"choice": list(c.choices)})
        elif self.dialect == "vllm-legacy":
            if c.kind == "json_schema":
                body["guided_json"] = c.schema
            else:
                body["guided_choice"] = list(c.choices)
        else:
            schema = c.schema if c.kind == "json_schema" else choice_schema(c.choices)
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": schema, "strict": True}}
        return "/chat/completions", body

    def _text(self, request: Request, text: str) -> str:
        # Only the openai dialect wraps a choice in JSON; the others constrain to the bare choice.
        return super()._text(request, text) if self.dialect == "openai" else text

    def _read(self, lines: Iterator[str], stream: Stream) -> None:
        for line in lines:
            if not line.startswith("data:"):
                continue  # blank separators, ": ping" comments, "event:" lines
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                err = chunk["error"]
                message = err.get("message", err) if isinstance(err, dict) else err
                stream.error = f"the server failed mid-stream: {message}"
                return
            usage = chunk.get("usage")
            if usage:
                stream.prompt_tokens = usage.get("prompt_tokens")
                stream.completion_tokens = usage.get("completion_tokens")
            for choice in chunk.get("choices") or []:
                stream.add((choice.get("delta") or {}).get("content") or "")
                if choice.get("finish_reason"):
                    stream.finished = True
                    stream.finish = "length" if choice["finish_reason"] == "length" else "stop"


def _owners(models: Any) -> list[str]:
    data = models.get("data") if isinstance(models, dict) else None
    return [m.get("owned_by") for m in data or [] if isinstance(m, dict)]


def _detect(models: Any) -> str:
    """The dialect from `GET /models`'s owned_by field (see the module docstring)."""
    return next((_OWNERS[o] for o in _owners(models) if o in _OWNERS), "openai")

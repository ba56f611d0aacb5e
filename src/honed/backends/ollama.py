"""Ollama through its native API (`POST /api/chat`, NDJSON stream): the one that carries the `think` flag and
`keep_alive`, which its OpenAI-compatible /v1 does not. A sibling of `OpenAIBackend` on the same HTTP base.

Constraints travel in `format` as a JSON schema (Ollama turns it into a grammar). Ollama has no choice
constraint, so a choice is sent as the schema {"answer": {"enum": choices}} (an object root, which every
Ollama version accepts) and the bare choice is unwrapped from the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from honed.backends._http import HTTPBackend, Stream, choice_schema
from honed.errors import ModelNotFound
from honed.types import ModelInfo, Request


class OllamaBackend(HTTPBackend):
    """A model served by Ollama. `keep_alive` ("5m", "-1", None for the server's default) keeps it loaded."""

    name = "ollama"
    supports_schema = True
    supports_choice = True

    def __init__(self, model: str, *, base_url: str = "http://127.0.0.1:11434", keep_alive: str | None = "5m",
                 timeout: float = 120, max_concurrency: int = 4) -> None:
        super().__init__(base_url, timeout=timeout, max_concurrency=max_concurrency)
        tags = self._probe("/api/tags", "`ollama serve`")
        names = {m.get("name") for m in tags.get("models") or [] if isinstance(m, dict)}
        if model not in names and f"{model}:latest" not in names:
            self.close()
            raise ModelNotFound(f"Ollama at {self.base_url} has no model {model!r}; run: ollama pull {model} "
                                f"(it has: {', '.join(sorted(n for n in names if n)) or 'none'})")
        self.model = model
        self.keep_alive = keep_alive
        self.info = ModelInfo(name=model, backend=self.name, path=None, sha256=None,
                              details={"base_url": self.base_url, "keep_alive": keep_alive,
                                       "prompt_format": "server_chat_template"})

    def _body(self, request: Request) -> tuple[str, dict[str, Any]]:
        s = request.sampling
        options: dict[str, Any] = {"temperature": s.temperature, "top_p": s.top_p, "seed": s.seed,
                                   "num_predict": s.max_tokens,
                                   # Ollama defaults to top_k 40 and repeat_penalty 1.1: switch them off so
                                   # that Sampling means what it means for every other backend.
                                   "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
        if s.stop:
            options["stop"] = list(s.stop)
        body: dict[str, Any] = {"model": self.model, "messages": [m.as_dict() for m in request.messages],
                                "stream": True, "options": options}
        if s.think is not None:
            body["think"] = s.think
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        c = request.constraint
        if c is not None:
            body["format"] = c.schema if c.kind == "json_schema" else choice_schema(c.choices)
        return "/api/chat", body

    def _read(self, lines: Iterator[str], stream: Stream) -> None:
        for line in lines:
            if not line.strip():
                continue
            chunk = json.loads(line)
            if chunk.get("error"):
                stream.error = f"Ollama failed mid-stream: {chunk['error']}"
                return
            # message.thinking (a thinking model's reasoning) is not part of the answer text.
            stream.add((chunk.get("message") or {}).get("content") or "")
            if chunk.get("done"):
                stream.finished = True
                stream.finish = "length" if chunk.get("done_reason") == "length" else "stop"
                stream.prompt_tokens = chunk.get("prompt_eval_count")
                stream.completion_tokens = chunk.get("eval_count")
                return

"""A small real HTTP server that speaks Ollama's native protocol, backed by the real SmolLM2 (llama_cpp).

Ollama itself cannot be installed here, so the tests of `OllamaBackend` talk to this instead. It implements
what the backend uses, the way Ollama does it:
- `GET /api/tags`: the model list;
- `POST /api/chat`: the model's chat template (from the GGUF), `options` (temperature, top_p, seed,
  num_predict, stop, top_k, min_p, repeat_penalty), `format` ("json" or a JSON schema, through a llama.cpp
  grammar), an NDJSON stream of message chunks ending in `done` with `done_reason`, `prompt_eval_count`,
  `eval_count`; 404 for an unknown model and 400 for `think: true` (SmolLM2 cannot think), as Ollama answers.
Every request body is kept in `requests`, so tests can check what reached the server (think, keep_alive).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter


class OllamaStandIn:
    """Serve `gguf` as model `name` on 127.0.0.1 (a free port) from a daemon thread."""

    def __init__(self, gguf: Path, name: str = "smollm2:latest") -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self.llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=2048, n_threads=1,
                                   n_threads_batch=1, verbose=False)
        text = self.llm._model.token_get_text
        self._formatter = Jinja2ChatFormatter(
            template=self.llm.metadata["tokenizer.chat_template"],
            eos_token=text(self.llm.token_eos()), bos_token=text(self.llm.token_bos()))
        self._lock = threading.Lock()  # one context: one request at a time (Ollama's NUM_PARALLEL=1)
        self.httpd = _Quiet(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.llm.close()

    def chat(self, body: dict[str, Any]) -> tuple[int, Any]:
        """(HTTP status, an error document or an iterator of NDJSON chunks)."""
        self.requests.append(body)
        if body.get("model") not in (self.name, self.name.split(":")[0]):
            return 404, {"error": f"model '{body.get('model')}' not found"}
        if body.get("think") is True:
            return 400, {"error": f"\"{body['model']}\" does not support thinking"}
        return 200, self._stream(body)

    def _stream(self, body: dict[str, Any]):  # type: ignore[no-untyped-def]
        o = body.get("options") or {}
        prompt = self._formatter(messages=body["messages"]).prompt
        tokens = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)
        fmt = body.get("format")
        grammar = None
        if fmt == "json":
            grammar = llama_cpp.LlamaGrammar.from_string(llama_cpp.llama_grammar.JSON_GBNF, verbose=False)
        elif isinstance(fmt, dict):
            grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(fmt), verbose=False)
        with self._lock:
            pieces, finish = [], "stop"
            for chunk in self.llm.create_completion(
                    tokens, max_tokens=o.get("num_predict", 128), temperature=o.get("temperature", 0.8),
                    top_p=o.get("top_p", 0.9), top_k=o.get("top_k", 40), min_p=o.get("min_p", 0.0),
                    repeat_penalty=o.get("repeat_penalty", 1.1), seed=o.get("seed"), stop=o.get("stop"),
                    grammar=grammar, stream=True):
                choice = chunk["choices"][0]
                pieces.append(choice["text"])
                finish = choice.get("finish_reason") or finish
                yield {"model": self.name, "message": {"role": "assistant", "content": choice["text"]},
                       "done": False}
            text = "".join(pieces)
            n_out = len(self.llm.tokenize(text.encode(), add_bos=False, special=True)) + (finish == "stop")
        yield {"model": self.name, "message": {"role": "assistant", "content": ""}, "done": True,
               "done_reason": "length" if finish == "length" else "stop",
               "prompt_eval_count": len(tokens), "eval_count": n_out}


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client closing its keep-alive is not news
            super().handle_error(request, client_address)


def _handler(server: OllamaStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _json(self, status: int, doc: Any) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/api/tags":
                self._json(200, {"models": [{"name": server.name, "model": server.name}]})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path != "/api/chat":
                self._json(404, {"error": "not found"})
                return
            status, result = server.chat(body)
            if status != 200:
                self._json(status, result)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for doc in result:
                line = (json.dumps(doc) + "\n").encode()
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    return Handler

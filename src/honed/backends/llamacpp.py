"""The embedded default: llama.cpp in-process through llama-cpp-python.

honed renders the prompt itself with the GGUF's own chat format (`honed.task.chat.from_llama`, through the one
prompt builder), so the text the model sees is known, hashed and identical to what training renders. A GGUF without a chat template is a base model: it gets a plain completion prompt, and honed says so.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from honed.backends.base import Backend, StreamStopped, usable_cpus
from honed.backends.models import file_sha256, resolve_gguf
from honed.errors import MissingDependency
from honed.task.chat import ChatFormat, from_llama
from honed.types import Constraint, ModelInfo, Request, Response

GRAMMAR_CACHE_SIZE = 16

log = logging.getLogger("honed")


def _gbnf_literal(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def choice_grammar(choices: Sequence[str]) -> str:
    """GBNF that accepts exactly one of `choices`."""
    return "root ::= " + " | ".join(_gbnf_literal(c) for c in choices)


def gpu_layers(llama_cpp: Any, asked: int | None) -> int:
    """Layers to offload: `asked`, else every layer (-1) where this llama.cpp build can offload (CUDA, Metal,
    Vulkan) and none where it cannot. Layers asked of a CPU-only build are refused: the figures would be CPU
    figures under a GPU setting."""
    from honed.errors import UserError

    can = bool(getattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)())
    if asked is None:
        return -1 if can else 0
    if asked < -1:
        raise UserError(f"--gpu-layers {asked}: give a number of layers, 0 for none or -1 for all")
    if asked and not can:
        raise UserError(f"--gpu-layers {asked}: this llama-cpp-python build cannot offload to a GPU (CPU only); "
                        'reinstall it with CMAKE_ARGS="-DGGML_CUDA=on" (Metal is on by default on macOS), or '
                        "use --gpu-layers 0")
    return asked


class LlamaCppBackend(Backend):
    name = "llamacpp"
    supports_schema = True
    supports_choice = True
    streams = True
    in_process = True

    def __init__(self, model: str, *, n_ctx: int = 4096, n_threads: int | None = None,
                 n_gpu_layers: int | None = None,
                 chat_template: bool | None = None) -> None:
        try:
            import llama_cpp
        except ImportError:
            raise MissingDependency("llama-cpp-python", extra="llamacpp", why="the embedded backend") from None
        self._llama_cpp = llama_cpp
        path = resolve_gguf(model)
        n_gpu_layers = gpu_layers(llama_cpp, n_gpu_layers)
        threads = n_threads or min(usable_cpus(), 8)  # llama-cpp-python's defaults count every CPU of the machine
        self._llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
            n_gpu_layers=n_gpu_layers, verbose=False,
        )
        meta = self._llm.metadata
        fmt = from_llama(self._llm, f"gguf {path.name}")
        use_chat = fmt.is_chat if chat_template is None else chat_template
        if use_chat and not fmt.is_chat:
            from honed.errors import UserError

            raise UserError(f"{path.name} has no chat template; it is a base model: drop the chat-template option")
        self.chat_format: ChatFormat = fmt if use_chat else fmt.plain()
        # Compiled grammars, least recently used first: a server sees one schema per client request, so the cache
        # must forget (a grammar can be megabytes), and a task's own few constraints stay hot.
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.info = ModelInfo(
            name=model, backend=self.name, path=str(path), sha256=file_sha256(path), chat_template=use_chat,
            details={
                "architecture": meta.get("general.architecture"),
                "model_name": meta.get("general.name"),
                "file_type": meta.get("general.file_type"),
                "n_params": self._llm.n_params() if hasattr(self._llm, "n_params") else None,
                "n_ctx": n_ctx,
                "n_gpu_layers": n_gpu_layers,
                "prompt_format": self.chat_format.prompt_format,
            },
        )
        if not use_chat:
            log.warning("%s has no chat template (a base model): using a plain completion prompt ending in "
                        "'Answer:'", path.name)

    def render(self, request: Request) -> str:
        """The exact prompt text for a request."""
        return self.chat_format.render(request.messages)

    def tokenize(self, prompt: str) -> list[int]:
        """Prompt text → token ids, adding BOS only where the model wants one and the text lacks it."""
        return self.chat_format.tokenize(prompt)

    def _grammar(self, constraint: Constraint | None) -> Any:
        if constraint is None:
            return None
        key = json.dumps([constraint.kind, constraint.schema, constraint.choices], sort_keys=True)
        if key in self._grammars:
            self._grammars.move_to_end(key)
            return self._grammars[key]
        g = self._llama_cpp.LlamaGrammar
        if constraint.kind == "json_schema":
            grammar = g.from_json_schema(json.dumps(constraint.schema), verbose=False)
        else:
            grammar = g.from_string(choice_grammar(constraint.choices), verbose=False)
        self._grammars[key] = grammar
        while len(self._grammars) > GRAMMAR_CACHE_SIZE:
            self._grammars.popitem(last=False)
        return grammar

    def _one(self, request: Request, on_text: Callable[[str], None] | None = None) -> Response:
        prompt = self.render(request)
        tokens = self.tokenize(prompt)
        s = request.sampling
        stop = list(s.stop) + list(self.chat_format.stops)
        t0 = time.perf_counter()
        ttft = None
        pieces: list[str] = []
        finish = "stop"
        try:
            stream = self._llm.create_completion(
                tokens, max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=0, min_p=0.0,
                repeat_penalty=1.0, seed=s.seed, stop=stop or None, grammar=self._grammar(request.constraint),
                stream=True,
            )
            for chunk in stream:
                choice = chunk["choices"][0]
                if ttft is None:
                    ttft = time.perf_counter() - t0
                pieces.append(choice["text"])
                if on_text is not None and choice["text"]:
                    on_text(choice["text"])
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        except (ValueError, RuntimeError) as exc:  # e.g. prompt longer than the context
            return Response(text="", finish_reason="error", prompt_tokens=len(tokens), latency_s=
                            time.perf_counter() - t0, error=str(exc), prompt_text=prompt)
        latency = time.perf_counter() - t0
        text = "".join(pieces)
        n_out = len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
        if finish == "stop":
            n_out += 1  # the end-of-turn token that stopped it was generated too
        return Response(text=text, finish_reason="length" if finish == "length" else "stop",
                        prompt_tokens=len(tokens), completion_tokens=n_out, ttft_s=ttft, latency_s=latency,
                        prompt_text=prompt)

    def choice_logprobs(self, request: Request, choices: Sequence[str]) -> list[float]:
        """Log-probability of each choice as the whole answer to `request`: its tokens, then the end of the turn
        (EOS under a chat template, a newline for a plain prompt), so a label that is a prefix of another
        ("card" / "card_arrival") is not favoured. Choices are tokenized on their own (canonical tokens).

        Reuses the prompt already in the KV cache (a request just generated costs one small batch per choice).
        """
        import numpy as np

        with self._lock:
            llm = self._llm
            prompt = self.tokenize(self.render(request))
            end = [self.chat_format.eos_token_id] if self.chat_format.is_chat else llm.tokenize(b"\n", add_bos=False)[-1:]
            cached = 0
            for a, b in zip(llm.input_ids[: llm.n_tokens], prompt[:-1], strict=False):
                if a != b:
                    break
                cached += 1
            llm.n_tokens = cached
            if cached < len(prompt) - 1:
                llm.eval(prompt[cached:-1])
            base = len(prompt) - 1  # the last prompt token is decoded with each choice, to get its logits
            out = []
            try:
                for choice in choices:
                    toks = llm.tokenize(choice.encode("utf-8"), add_bos=False, special=False) + end
                    llm._ctx.kv_cache_seq_rm(-1, base, -1)
                    llm._batch.set_batch([prompt[-1], *toks[:-1]], n_past=base, logits_all=True)
                    llm._ctx.decode(llm._batch)
                    total = 0.0
                    for i, tok in enumerate(toks):
                        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(i), shape=(llm.n_vocab(),))
                        top = float(logits.max())
                        total += float(logits[tok]) - top - float(np.log(np.exp(logits - top).sum()))
                    out.append(total)
            finally:
                # Only prompt[:-1] is known to be in the cache now; the next generation re-decodes from there.
                llm._ctx.kv_cache_seq_rm(-1, base, -1)
                llm.n_tokens = base
                llm._requires_eval = True
            return out

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        with self._lock:  # one llama.cpp context serves one request at a time
            return [self._one(r) for r in requests]

    def stream(self, request: Request, on_text: Callable[[str], None]) -> Response:
        with self._lock:
            try:
                return self._one(request, on_text)
            except StreamStopped:  # its traceback holds llama.cpp's half-run generator: dropped here, under the
                pass               # lock, it closes now, not later while another request decodes
        raise StreamStopped

    def cache_identity(self) -> str:
        """The file's sha256, plus the offloaded layers when any: answers and timings on a GPU are not the
        CPU's, so an arm on the GPU never reads a CPU arm's cached responses (and the reverse)."""
        n = self.info.details.get("n_gpu_layers")
        return self.info.sha256 if not n else f"{self.info.sha256}+gpu-layers:{n}"

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()  # avoids the noisy __del__ at interpreter exit
            self._llm = None

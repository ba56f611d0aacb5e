"""Token lengths of a task's examples as a model will be trained on them: (prompt, completion) per example.

The prompt is built by THE prompt builder (`honed.task.prompt`) and rendered with the model's own chat template
(`render_chat`), or as a plain completion prompt for a base model without one (`render_plain`), exactly as
evaluation renders it. The completion is what the loss is computed on: the answer (`build_answer`) plus the
template's end-of-turn tokens, counted as the difference between the rendered conversation with and without
the assistant's turn.

A GGUF is tokenized by llama.cpp with `vocab_only=True` (no weights loaded: ~0.2 s); an HF folder by its
transformers tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from honed.errors import MissingDependency, ModelNotFound
from honed.task.data import Item
from honed.task.prompt import build_answer, build_messages, render_chat, render_plain
from honed.task.spec import Task
from honed.types import Message


class _Tokenizer:
    """The three things the count needs: the chat template, BOS/EOS texts and text → ids."""

    def __init__(self, template: str | None, bos: str, eos: str, encode: Callable[[str, bool], list[int]],
                 close: Callable[[], None] = lambda: None) -> None:
        self.template, self.bos, self.eos, self._encode, self.close = template, bos, eos, encode, close

    def count(self, text: str) -> int:
        # BOS only where the model wants one and the rendered text does not already start with it.
        return len(self._encode(text, not (self.bos and text.startswith(self.bos))))


def _gguf_tokenizer(path: Path) -> _Tokenizer:
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependency("llama-cpp-python", extra="llamacpp", why="tokenizing for the planner") from None
    try:  # a vocab-only context reports "n_ctx_seq > n_ctx_train (0)" on stderr; it is harmless
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:  # pragma: no cover - private helper moved
        suppress_stdout_stderr = None
    if suppress_stdout_stderr is not None:
        with suppress_stdout_stderr(disable=False):
            llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    else:  # pragma: no cover
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)

    def text(token: int) -> str:
        return llm._model.token_get_text(token) if token >= 0 else ""

    return _Tokenizer(llm.metadata.get("tokenizer.chat_template"), text(llm.token_bos()), text(llm.token_eos()),
                      lambda s, add_bos: llm.tokenize(s.encode("utf-8"), add_bos=add_bos, special=True), llm.close)


def _hf_tokenizer(folder: Path) -> _Tokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MissingDependency("transformers", extra="train", why="tokenizing an HF checkpoint") from None
    tok: Any = AutoTokenizer.from_pretrained(folder)
    return _Tokenizer(tok.chat_template, tok.bos_token or "", tok.eos_token or "",
                      lambda s, add_bos: tok(s, add_special_tokens=add_bos)["input_ids"])


def open_tokenizer(model: str) -> _Tokenizer:
    """An HF checkpoint folder, a .gguf path or an alias → a tokenizer with its chat template."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelNotFound(f"{p} is not a Hugging Face checkpoint (no config.json)")
        return _hf_tokenizer(p)
    from honed.backends.models import resolve_gguf

    return _gguf_tokenizer(resolve_gguf(model))


def token_lengths(task: Task, items: list[Item], model: str) -> tuple[list[tuple[int, int]], bool]:
    """((prompt tokens, completion tokens) per item, whether the model's chat template was used)."""
    tok = open_tokenizer(model)
    try:
        out = []
        for item in items:
            messages = build_messages(task, item.inputs)
            answer = build_answer(task, item.expected)
            if tok.template:
                prompt = render_chat(messages, tok.template, bos_token=tok.bos, eos_token=tok.eos)
                full = render_chat((*messages, Message("assistant", answer)), tok.template, bos_token=tok.bos,
                                   eos_token=tok.eos, add_generation_prompt=False)
            else:  # a base model: the answer follows "Answer:" and ends with EOS
                prompt = render_plain(messages)
                full = f"{prompt} {answer}{tok.eos}"
            n_prompt = tok.count(prompt)
            out.append((n_prompt, max(1, tok.count(full) - n_prompt)))
        return out, bool(tok.template)
    finally:
        tok.close()

"""Token lengths of a task's examples as a model will be trained on them: (prompt, completion) per example.

The prompt is built by THE prompt builder (`honed.task.prompt`) and rendered with the model's chat format
(`honed.task.chat`: its own chat template, or a plain completion prompt for a base model), exactly as evaluation
renders it. The completion is what the loss is computed on: the answer (`build_answer`) and the template's
end-of-turn token, as training encodes it (`ChatFormat.render_turn`).

A GGUF is tokenized by llama.cpp with `vocab_only=True` (no weights loaded: ~0.2 s); an HF folder by its
transformers tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from honed.errors import MissingDependency, ModelNotFound
from honed.task.chat import ChatFormat, from_tokenizer, open_gguf
from honed.task.data import Item
from honed.task.prompt import build_answer, build_messages
from honed.task.spec import Task


@contextmanager
def open_tokenizer(model: str) -> Iterator[ChatFormat]:
    """An HF checkpoint folder, a .gguf path or an alias → its chat format, tokenizer included."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelNotFound(f"{p} is not a Hugging Face checkpoint (no config.json)")
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise MissingDependency("transformers", extra="train", why="tokenizing an HF checkpoint") from None
        yield from_tokenizer(AutoTokenizer.from_pretrained(p))
        return
    from honed.backends.models import resolve_gguf

    with open_gguf(resolve_gguf(model), why="tokenizing for the planner") as fmt:
        yield fmt


def token_lengths(task: Task, items: list[Item], model: str) -> tuple[list[tuple[int, int]], bool]:
    """((prompt tokens, completion tokens) per item, whether the model's chat template was used)."""
    with open_tokenizer(model) as fmt:
        out = []
        for item in items:
            prompt, completion = fmt.render_turn(build_messages(task, item.inputs), build_answer(task, item.expected))
            out.append((len(fmt.tokenize(prompt)), max(1, len(fmt.encode_text(completion)))))
        return out, fmt.is_chat

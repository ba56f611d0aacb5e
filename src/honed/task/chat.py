"""A model's chat format: THE object every stage renders and tokenizes prompts with.

`ChatFormat` holds what a model says about how it reads a conversation — its chat template (None: a base model,
prompted with plain completion text), its BOS/EOS tokens — and renders and tokenizes with them:
`render(messages)` is the exact prompt text, `render_turn(messages, answer)` the (prompt, completion) pair
training learns, `tokenize(text)` the ids the model is fed (BOS added exactly where the model wants one and the
text lacks it), `stops` the stop strings a plain prompt needs.

It is built in one of two ways, and nowhere else reads a chat template:
- `from_llama(llm)` / `open_gguf(path)`: from a GGUF's own metadata through llama.cpp (the llama.cpp backend,
  the planner's token counts, tune's train/serve check, export's round trip and usage examples);
- `from_tokenizer(tok)`: from a transformers tokenizer (the transformers backend, training, the gate).

The text itself comes from THE prompt builder (`honed.task.prompt`: `render_chat`, `render_plain`), so a prompt is
byte-for-byte the same whichever stage renders it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from honed.errors import MissingDependency, UserError
from honed.task.prompt import PLAIN_STOP, render_chat, render_plain
from honed.types import Message

GGUF_TEMPLATE_KEY = "tokenizer.chat_template"
"""Where a GGUF keeps its chat template (read here only)."""


class TemplateMismatch(UserError):
    """The training tokens of a prompt differ from the tokens the served model would see."""


@dataclass(frozen=True)
class ChatFormat:
    """How one model reads a conversation: its chat template and special tokens, and its text → ids."""

    chat_template: str | None
    """The Jinja2 chat template; None for a base model (plain completion prompt ending in "Answer:")."""
    bos_token: str = ""
    eos_token: str = ""
    """The end-of-sequence text; a completion that the template does not close ends with it."""
    eos_token_id: int = -1
    bos_token_id: int | None = None
    """The BOS id `tokenize` prepends (None: the model wants no BOS, or it is unknown)."""
    encode: Callable[[str], list[int]] | None = field(default=None, compare=False, repr=False)
    """Text → ids with special tokens parsed and none added (the model's own tokenizer)."""
    source: str = ""
    """Where the format was read: "gguf NAME" or "tokenizer"."""

    @property
    def is_chat(self) -> bool:
        return bool(self.chat_template)

    @property
    def prompt_format(self) -> str:
        """"chat_template" or "plain_completion" (recorded in every model's info)."""
        return "chat_template" if self.is_chat else "plain_completion"

    @property
    def stops(self) -> tuple[str, ...]:
        """Stop strings the prompt format needs: none under a chat template (the turn ends on EOS), the next
        paragraph for a plain prompt (a base model continues text)."""
        return () if self.is_chat else PLAIN_STOP

    def plain(self) -> ChatFormat:
        """The same model prompted with plain completion text (its chat template ignored)."""
        return replace(self, chat_template=None)

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
        """The exact text the model sees for `messages`."""
        if self.chat_template:
            return render_chat(tuple(messages), self.chat_template, bos_token=self.bos_token,
                               eos_token=self.eos_token, add_generation_prompt=add_generation_prompt)
        return render_plain(tuple(messages))

    def render_turn(self, messages: Sequence[Message], answer: str) -> tuple[str, str]:
        """(prompt, completion): the completion is what the template writes after the prompt for `answer`, up to
        and including the turn terminator — what training learns and what a served model must produce."""
        prompt = self.render(messages)
        if not self.chat_template:  # a base model: the answer follows "Answer:" after a space, then EOS
            return prompt, " " + answer + self.eos_token
        full = self.render((*messages, Message("assistant", answer)), add_generation_prompt=False)
        if not full.startswith(prompt):
            raise TemplateMismatch("the chat template renders the conversation differently with and without the "
                                   "answer (the prompt is not a prefix of the training text); honed cannot train "
                                   "this template faithfully")
        completion = full[len(prompt):]
        cut = completion.find(self.eos_token) if self.eos_token else -1
        if cut >= 0:
            completion = completion[: cut + len(self.eos_token)]  # drop what follows the terminator (a newline)
        else:
            completion += self.eos_token  # a template that does not close the turn: teach the EOS explicitly
        return prompt, completion

    def encode_text(self, text: str) -> list[int]:
        """Ids of `text` as it stands (special tokens parsed, no BOS added): a completion's ids."""
        if self.encode is None:
            raise TypeError(f"this chat format ({self.source or 'built by hand'}) has no tokenizer")
        return list(self.encode(text))

    def tokenize(self, prompt: str) -> list[int]:
        """A prompt's ids: BOS first exactly where the model wants one and the rendered text does not carry it
        (as llama.cpp and Ollama feed it, and as training encodes it)."""
        ids = self.encode_text(prompt)
        if self.bos_token_id is not None and not (self.bos_token and prompt.startswith(self.bos_token)):
            ids = [self.bos_token_id, *ids]
        return ids


def from_tokenizer(tokenizer: Any, chat_template: str | None = None) -> ChatFormat:
    """The chat format of a transformers tokenizer (`chat_template` overrides the tokenizer's own)."""
    bos_id = tokenizer.bos_token_id
    # does this tokenizer add BOS on its own? (SmolLM2's does not; Gemma's does) — ask it rather than guess
    wants_bos = bos_id is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos_id]
    eos_id = tokenizer.eos_token_id
    return ChatFormat(
        chat_template=chat_template if chat_template is not None else tokenizer.chat_template,
        bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or "",
        eos_token_id=int(eos_id) if eos_id is not None else -1, bos_token_id=bos_id if wants_bos else None,
        encode=lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"]), source="tokenizer")


def from_llama(llm: Any, source: str = "gguf") -> ChatFormat:
    """The chat format stored in a GGUF, from a llama.cpp model already open (weights or vocab only): the one
    reader of a GGUF's chat template and BOS/EOS."""
    model = llm._model

    def text(token: int) -> str:
        return model.token_get_text(token) if token >= 0 else ""

    bos, eos = llm.token_bos(), llm.token_eos()
    return ChatFormat(
        chat_template=llm.metadata.get(GGUF_TEMPLATE_KEY) or None, bos_token=text(bos), eos_token=text(eos),
        eos_token_id=eos, bos_token_id=bos if bos >= 0 and model.add_bos_token() else None,
        encode=lambda s: llm.tokenize(s.encode("utf-8"), add_bos=False, special=True), source=source)


@contextmanager
def gguf_vocab(path: Path, why: str = "reading a GGUF's tokenizer") -> Iterator[Any]:
    """A GGUF opened by llama.cpp with its vocabulary only (no weights: ~0.2 s even for a big file), closed after."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import llama_cpp
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:
        raise MissingDependency("llama-cpp-python", extra="llamacpp", why=why) from None
    with suppress_stdout_stderr(disable=False):  # a vocab-only context's "n_ctx_seq > n_ctx_train" is harmless
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        yield llm
    finally:
        llm.close()


@contextmanager
def open_gguf(path: Path, why: str = "reading a GGUF's chat template") -> Iterator[ChatFormat]:
    """The chat format of a GGUF file, its tokenizer usable until the block ends."""
    with gguf_vocab(path, why) as llm:
        yield from_llama(llm, f"gguf {Path(path).name}")


def read_gguf(path: Path) -> ChatFormat:
    """The chat format of a GGUF file, for rendering only (its tokenizer is closed on return)."""
    with open_gguf(path) as fmt:
        return replace(fmt, encode=None)

"""Training examples, rendered exactly as they will be served.

For each item: the prompt is the one prompt builder's messages rendered with the model's chat template (the
same call the llama.cpp backend makes), and the completion is whatever the template puts after the prompt for
the assistant's answer: the answer text AND the turn terminator (`<|im_end|>`, `<end_of_turn>`, EOS), so the
tuned model learns to stop. Only completion tokens are learned (completion-only loss).

Guardrails (seed 001): a completion is never truncated — an example whose completion does not fit is skipped and
counted; a prompt that does not fit is middle-truncated (its head, with the instructions, and its tail, with the
input, are kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from honed.errors import UserError
from honed.task.data import Item
from honed.task.prompt import build_answer, build_messages, render_chat, render_plain
from honed.task.spec import Task
from honed.types import Message


class TemplateMismatch(UserError):
    """The training tokens of a prompt differ from the tokens the served model would see."""


@dataclass
class Encoded:
    id: str
    input_ids: list[int]
    completion_mask: list[int]
    n_prompt: int
    n_completion: int
    prompt_truncated: bool = False


@dataclass
class EncodeReport:
    max_length: int
    kept: int = 0
    skipped_long_completion: list[str] = field(default_factory=list)
    prompt_truncated: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "kept": self.kept,
                "skipped_long_completion": self.skipped_long_completion,
                "prompt_truncated": self.prompt_truncated}


@dataclass
class TemplateInfo:
    """How prompts are rendered for one model: its chat template (None: plain completion) and special tokens."""

    chat_template: str | None
    bos_token: str
    eos_token: str
    eos_token_id: int


def render_prompt(task: Task, inputs: dict[str, Any], tpl: TemplateInfo) -> str:
    """The exact text a served model sees for these inputs (the llama.cpp backend renders the same)."""
    messages = build_messages(task, inputs)
    if tpl.chat_template:
        return render_chat(messages, tpl.chat_template, bos_token=tpl.bos_token, eos_token=tpl.eos_token)
    return render_plain(messages)


def render_completion(task: Task, inputs: dict[str, Any], expected: Any, tpl: TemplateInfo) -> tuple[str, str]:
    """(prompt, completion): the completion is what the template writes after the prompt for the answer,
    up to and including the turn terminator."""
    prompt = render_prompt(task, inputs, tpl)
    answer = build_answer(task, expected)
    if not tpl.chat_template:
        return prompt, " " + answer + tpl.eos_token
    messages = build_messages(task, inputs) + (Message("assistant", answer),)
    full = render_chat(messages, tpl.chat_template, bos_token=tpl.bos_token, eos_token=tpl.eos_token,
                       add_generation_prompt=False)
    if not full.startswith(prompt):
        raise TemplateMismatch("the chat template renders the conversation differently with and without the "
                               "answer (the prompt is not a prefix of the training text); honed cannot train "
                               "this template faithfully")
    completion = full[len(prompt):]
    cut = completion.find(tpl.eos_token) if tpl.eos_token else -1
    if cut >= 0:
        completion = completion[: cut + len(tpl.eos_token)]  # drop what follows the terminator (a newline)
    else:
        completion += tpl.eos_token  # a template that does not close the turn: teach the EOS explicitly
    return prompt, completion


def tokenize_text(tokenizer: Any, text: str, tpl: TemplateInfo) -> list[int]:
    """Token ids of a prompt, with BOS added exactly when the serving side adds it (when the text lacks it)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos_id = tokenizer.bos_token_id
    # does this tokenizer add BOS on its own? (SmolLM2's does not; Gemma's does) — ask it rather than guess
    wants_bos = bos_id is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos_id]
    if wants_bos and not (tpl.bos_token and text.startswith(tpl.bos_token)):
        ids = [bos_id] + ids
    return ids


def middle_truncate(ids: list[int], budget: int) -> list[int]:
    """Keep the first third (instructions) and the last two thirds (the input) of a too-long prompt."""
    if len(ids) <= budget:
        return ids
    head = budget // 3
    return ids[:head] + ids[len(ids) - (budget - head):]


def encode(task: Task, items: list[Item], tokenizer: Any, tpl: TemplateInfo, max_length: int
           ) -> tuple[list[Encoded], EncodeReport]:
    """Items → token ids with a completion mask. Over-long completions are skipped, never cut."""
    report = EncodeReport(max_length=max_length)
    out: list[Encoded] = []
    for item in items:
        prompt, completion = render_completion(task, item.inputs, item.expected, tpl)
        p_ids = tokenize_text(tokenizer, prompt, tpl)
        c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if c_ids[-1] != tpl.eos_token_id:
            raise TemplateMismatch(f"item {item.id}: the completion does not end with the terminator token "
                                   f"{tpl.eos_token!r} (id {tpl.eos_token_id}) but with id {c_ids[-1]}")
        if len(c_ids) >= max_length - 8:
            report.skipped_long_completion.append(item.id)
            continue
        truncated = len(p_ids) + len(c_ids) > max_length
        if truncated:
            p_ids = middle_truncate(p_ids, max_length - len(c_ids))
            report.prompt_truncated.append(item.id)
        out.append(Encoded(item.id, p_ids + c_ids, [0] * len(p_ids) + [1] * len(c_ids), len(p_ids), len(c_ids),
                           truncated))
    report.kept = len(out)
    return out, report


def check_serving_identity(task: Task, item: Item, tokenizer: Any, tpl: TemplateInfo,
                           serving_tokens: list[int], serving_prompt: str) -> None:
    """Refuse to train when the training prefix differs from what the served model will see.

    `serving_prompt`/`serving_tokens` come from the serving side (llama.cpp with the GGUF's own template and
    tokenizer); the training side renders with the template and tokenizer it will train with.
    """
    train_prompt = render_prompt(task, item.inputs, tpl)
    train_tokens = tokenize_text(tokenizer, train_prompt, tpl)
    if train_prompt != serving_prompt or train_tokens != serving_tokens:
        n = next((i for i, (a, b) in enumerate(zip(train_tokens, serving_tokens)) if a != b),
                 min(len(train_tokens), len(serving_tokens)))
        raise TemplateMismatch(
            f"train/serve template mismatch on item {item.id}: the training prompt and the served prompt differ "
            f"from token {n} (training {train_tokens[n:n + 8]} vs serving {serving_tokens[n:n + 8]}; "
            f"prompt ends {train_prompt[-60:]!r} vs {serving_prompt[-60:]!r}). A model trained on one and served with the other "
            "answers garbage: use the model's own chat template for both")

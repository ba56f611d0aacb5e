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

from honed.task.chat import ChatFormat, TemplateMismatch
from honed.task.data import Item
from honed.task.prompt import build_answer, build_messages
from honed.task.spec import Task


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


def render_prompt(task: Task, inputs: dict[str, Any], fmt: ChatFormat) -> str:
    """The exact text a served model sees for these inputs (every backend renders the same)."""
    return fmt.render(build_messages(task, inputs))


def render_completion(task: Task, inputs: dict[str, Any], expected: Any, fmt: ChatFormat) -> tuple[str, str]:
    """(prompt, completion): the completion is what the template writes after the prompt for the answer,
    up to and including the turn terminator."""
    return fmt.render_turn(build_messages(task, inputs), build_answer(task, expected))


def middle_truncate(ids: list[int], budget: int) -> list[int]:
    """Keep the first third (instructions) and the last two thirds (the input) of a too-long prompt."""
    if len(ids) <= budget:
        return ids
    head = budget // 3
    return ids[:head] + ids[len(ids) - (budget - head):]


def encode(task: Task, items: list[Item], fmt: ChatFormat, max_length: int) -> tuple[list[Encoded], EncodeReport]:
    """Items → token ids with a completion mask. Over-long completions are skipped, never cut."""
    report = EncodeReport(max_length=max_length)
    out: list[Encoded] = []
    for item in items:
        prompt, completion = render_completion(task, item.inputs, item.expected, fmt)
        p_ids = fmt.tokenize(prompt)
        c_ids = fmt.encode_text(completion)
        if c_ids[-1] != fmt.eos_token_id:
            raise TemplateMismatch(f"item {item.id}: the completion does not end with the terminator token "
                                   f"{fmt.eos_token!r} (id {fmt.eos_token_id}) but with id {c_ids[-1]}")
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


def check_serving_identity(task: Task, item: Item, fmt: ChatFormat, serving_tokens: list[int],
                           serving_prompt: str) -> None:
    """Refuse to train when the training prefix differs from what the served model will see.

    `serving_prompt`/`serving_tokens` come from the serving side (llama.cpp with the GGUF's own template and
    tokenizer); the training side renders with the template and tokenizer it will train with.
    """
    train_prompt = render_prompt(task, item.inputs, fmt)
    train_tokens = fmt.tokenize(train_prompt)
    if train_prompt != serving_prompt or train_tokens != serving_tokens:
        n = next((i for i, (a, b) in enumerate(zip(train_tokens, serving_tokens)) if a != b),
                 min(len(train_tokens), len(serving_tokens)))
        raise TemplateMismatch(
            f"train/serve template mismatch on item {item.id}: the training prompt and the served prompt differ "
            f"from token {n} (training {train_tokens[n:n + 8]} vs serving {serving_tokens[n:n + 8]}; "
            f"prompt ends {train_prompt[-60:]!r} vs {serving_prompt[-60:]!r}). A model trained on one and served with the other "
            "answers garbage: use the model's own chat template for both")

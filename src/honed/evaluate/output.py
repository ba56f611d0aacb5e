"""From a model's raw text to an answer, or to the reason there is none.

Each task kind has its own parser (label, candidate number, JSON, free text); `parse_output` runs the right
one and names the failure cause. Whether a parsed answer is *right* is the scorers' business, not this
module's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from honed.task.relations import check_relationships
from honed.task.spec import Task
from honed.types import Response

FAILURE_CAUSES = (
    "error",
    "empty_after_thinking",
    "cut_at_max_tokens",
    "refused",
    "unparseable",
    "schema_invalid",
    "wrong_answer",
)

_THINK_BLOCK = re.compile(r"<(think|thinking)>.*?</\1>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<(?:think|thinking)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking)>", re.IGNORECASE)


def strip_thinking(text: str) -> tuple[str, bool]:
    """Remove `<think>…</think>` and `<thinking>…</thinking>` blocks: (visible text, had thinking).

    An unclosed opening tag means the model was still thinking when it stopped, so only what came before it is
    visible. A closing tag with no opening one is what models whose chat template opens the block in the
    prompt (Qwen3, DeepSeek-R1) produce: everything before it is thinking.
    """
    visible, n_blocks = _THINK_BLOCK.subn("", text)
    had = n_blocks > 0
    opening = _THINK_OPEN.search(visible)
    if opening:
        visible, had = visible[: opening.start()], True
    closings = list(_THINK_CLOSE.finditer(visible))
    if closings:
        visible, had = visible[closings[-1].end():], True
    return visible.strip(), had


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in a text: the whole text, a fenced ```json block, or the first {...}/[...] amid prose.

    Raises ValueError when the text holds no parseable JSON object or array.
    """
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for block in _FENCE.findall(stripped):
        try:
            return json.loads(block.strip())
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[{\[]", stripped):
        try:
            value, _ = decoder.raw_decode(stripped, match.start())
        except ValueError:
            continue
        return value
    raise ValueError("no JSON object or array found in the text")


# A leading "Answer:" and the like; models add them even when told not to.
_PREFIX = re.compile(r"^\s*(?:final answer|answer|label|category|class|intent|candidate)\s*[:=]\s*",
                     re.IGNORECASE)
_WRAPPING = " \t\r\n\"'`*“”‘’"
_TRAILING = " \t\r\n.,;:!?\"'`*“”‘’"


def _clean(text: str) -> str:
    text = text.strip().strip(_WRAPPING)
    text = _PREFIX.sub("", text)
    return text.strip(_WRAPPING).rstrip(_TRAILING).strip(_WRAPPING)


def _key(text: str) -> str:
    """Case-insensitive form in which '_', '-' and spaces are the same separator."""
    return re.sub(r"[\s_\-]+", " ", text.strip().lower()).strip()


def _phrase_spans(label: str, text: str) -> list[tuple[int, int]]:
    words = [re.escape(w) for w in _key(label).split(" ") if w]
    if not words:
        return []
    # '_' and '-' join words, so "card" is not found inside "card_arrival" nor "card-based".
    pattern = r"(?<![\w\-])" + r"[\s_\-]+".join(words) + r"(?![\w\-])"
    return [m.span() for m in re.finditer(pattern, text, re.IGNORECASE)]


def normalize_label(text: str, labels: list[str]) -> str | None:
    """The label a model's answer names, or None.

    First an exact match after cleaning (whitespace, quotes, trailing punctuation, "Label:"/"Answer:"
    prefixes; case, '_', '-' and ' ' do not matter), on the whole text and then on its first line (models
    answer, then explain). Else the one label that occurs as a whole phrase in the text; a label found only
    inside a longer label's occurrence ("card" in "card arrival") gives way to it. Two different labels: None.
    """
    by_key = {_key(label): label for label in labels}
    first_line = text.strip().split("\n", 1)[0]
    for candidate in (text, first_line):
        hit = by_key.get(_key(_clean(candidate)))
        if hit is not None:
            return hit
    spans = {label: _phrase_spans(label, text) for label in labels}
    found = {label: s for label, s in spans.items() if s}

    def covered(label: str) -> bool:
        """Every occurrence of `label` lies inside a longer label's occurrence."""
        others = [span for o in found if o != label for span in found[o]]
        return all(any(os <= s and e <= oe and oe - os > e - s for os, oe in others) for s, e in found[label])

    remaining = [label for label in found if not covered(label)]
    return remaining[0] if len(remaining) == 1 else None


_NUMBER = re.compile(r"(?<![\d.])\d+(?![\d]|\.\d)")


def parse_pick(text: str, n: int, none_label: str) -> int | str | None:
    """A candidate number 1..n, `none_label`, or None (out of range, ambiguous, or no answer).

    Accepts "3", "3.", "Answer: 3", "#3", "NONE", "none". Every number and every mention of the none label in
    the text counts: two different answers are ambiguous and give None rather than a guess.
    """
    cleaned = _clean(text).lstrip("#")
    none_keys = {_key(none_label), "none"}
    if _key(cleaned) in none_keys:
        return none_label
    answers: set[int | str] = {int(m) for m in _NUMBER.findall(cleaned)}
    if any(_phrase_spans(key, cleaned) for key in none_keys):
        answers.add(none_label)
    if len(answers) != 1:
        return None
    (answer,) = answers
    if isinstance(answer, int) and not 1 <= answer <= n:
        return None
    return answer


_REFUSAL = re.compile(
    r"\b(?:i\s*(?:'|’)?\s*m\s+sorry|i\s+am\s+sorry|i\s+apologi[sz]e|i\s+cannot|i\s+can\s*(?:'|’)?\s*t\b|i\s+can\s+not"
    r"|i\s*(?:'|’)?\s*m\s+(?:unable|not\s+able)|i\s+am\s+(?:unable|not\s+able)|i\s+won\s*(?:'|’)?\s*t\b"
    r"|as\s+an\s+ai\b|as\s+a\s+(?:large\s+)?language\s+model)",
    re.IGNORECASE,
)


def looks_like_refusal(text: str) -> bool:
    """Whether a text reads like a refusal ("I'm sorry", "I cannot", "I can't help", "As an AI …")."""
    return _REFUSAL.search(text) is not None


@dataclass
class Parsed:
    """A parsed response: the answer (None when there is none), the failure cause, and the visible text."""

    answer: Any
    cause: str | None
    visible: str
    unchecked: Any = None
    """Extraction: the JSON as the model wrote it, where the relation check (`honed.task.relations`) changed it."""


def _parse_answer(task: Task, inputs: dict[str, Any], visible: str) -> tuple[Any, bool, bool]:
    """(answer, parsed, schema_valid) for the task's kind."""
    if task.kind == "classify":
        label = normalize_label(visible, task.labels)
        return label, label is not None, True
    if task.kind == "pick":
        assert task.spec.pick is not None
        candidates = inputs.get(task.spec.pick.candidates_field)
        n = len(candidates) if isinstance(candidates, list) else 0
        pick = parse_pick(visible, n, task.spec.pick.none_label)
        return pick, pick is not None, True
    if task.kind == "extract":
        try:
            value = extract_json(visible)
        except ValueError:
            return None, False, True
        valid = task.schema is None or jsonschema.Draft202012Validator(task.schema).is_valid(value)
        return value, True, valid
    # generate: the text is the answer; an empty one has nothing to score.
    return visible, bool(visible), True


def parse_output(task: Task, inputs: dict[str, Any], response: Response) -> Parsed:
    """Turn one response into an answer and, when it failed, the first matching cause of FAILURE_CAUSES.

    Causes are decided in this order: error, empty_after_thinking, cut_at_max_tokens (stopped at the token
    budget and unparseable or schema-invalid), refused, unparseable, schema_invalid. A schema-invalid JSON
    answer is kept so that field-level scores can still credit what it got right. An extraction answer's
    relationships are checked against the task's allowed triples here, before anyone sees the answer.
    """
    visible, had_thinking = strip_thinking(response.text or "")
    if response.finish_reason == "error":
        return Parsed(None, "error", visible)
    if had_thinking and not visible:
        return Parsed(None, "empty_after_thinking", visible)
    answer, parsed, schema_valid = _parse_answer(task, inputs, visible)
    unchecked = None
    if parsed and task.kind == "extract":
        checked = check_relationships(task.spec.extract, answer)
        if checked.value is not answer:
            unchecked, answer = answer, checked.value
    if parsed and schema_valid:
        return Parsed(answer, None, visible, unchecked)
    if not parsed:
        answer = None
    if response.finish_reason == "length":
        return Parsed(answer, "cut_at_max_tokens", visible, unchecked)
    if not parsed:
        return Parsed(None, "refused" if looks_like_refusal(visible) else "unparseable", visible)
    return Parsed(answer, "schema_invalid", visible, unchecked)

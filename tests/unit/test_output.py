"""Raw model text → answer and failure cause (honed.evaluate.output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.evaluate.output import (
    FAILURE_CAUSES,
    Parsed,
    extract_json,
    looks_like_refusal,
    normalize_label,
    parse_output,
    parse_pick,
    strip_thinking,
)
from honed.task.spec import Task, load_task
from honed.types import Response

pytestmark = pytest.mark.unit

LABELS = ["card", "card_arrival", "lost_or_stolen_card", "top-up failed", "NONE"]


def _task(tmp_path: Path, body: str) -> Task:
    (tmp_path / "honed.toml").write_text(body, encoding="utf-8")
    return load_task(tmp_path)


@pytest.fixture
def classify_task(tmp_path: Path) -> Task:
    return _task(tmp_path, """
name = "intents"
kind = "classify"
[prompt]
template = "{{ text }}"
[classify]
labels = ["card_arrival", "lost_or_stolen_card", "top_up_failed"]
none_label = "NONE"
""")


@pytest.fixture
def pick_task(tmp_path: Path) -> Task:
    return _task(tmp_path, """
name = "picker"
kind = "pick"
[prompt]
template = "{{ query }} {{ numbered_candidates }}"
[pick]
none_label = "NONE"
""")


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture
def extract_task(tmp_path: Path) -> Task:
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    return _task(tmp_path, """
name = "people"
kind = "extract"
[prompt]
template = "{{ text }}"
[extract]
schema_file = "schema.json"
""")


@pytest.fixture
def generate_task(tmp_path: Path) -> Task:
    return _task(tmp_path, """
name = "report"
kind = "generate"
[prompt]
template = "{{ text }}"
""")


def _resp(text: str, finish: str = "stop") -> Response:
    return Response(text=text, finish_reason=finish)  # type: ignore[arg-type]


# --- strip_thinking ---

@pytest.mark.parametrize(
    ("text", "visible", "had"),
    [
        ("plain answer", "plain answer", False),
        ("<think>hmm, card?</think>\ncard_arrival", "card_arrival", True),
        ("<thinking>a\nb</thinking> yes", "yes", True),
        ("<THINK>x</THINK>yes", "yes", True),
        ("<think>a</think>one<think>b</think>two", "onetwo", True),
        ("prefix <think>still thinking when the budget ran out", "prefix", True),
        ("<think>never closed", "", True),
        ("reasoning opened by the template</think>\n\nthe answer", "the answer", True),
        ("<think>\n\n</think>\n\n", "", True),
    ],
)
def test_strip_thinking(text: str, visible: str, had: bool) -> None:
    assert strip_thinking(text) == (visible, had)


# --- extract_json ---

@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        ('Here you go:\n```json\n{"a": [1, 2]}\n```\nDone.', {"a": [1, 2]}),
        ('```\n{"b": true}\n```', {"b": True}),
        ('The answer is {"name": "Ann", "age": 3} as requested.', {"name": "Ann", "age": 3}),
        ('Note {not json} then {"ok": "yes"} and {"later": 1}', {"ok": "yes"}),
        ('a [bracket] first, then ["x"]', ["x"]),
        ('{"nested": {"x": "}"}} trailing', {"nested": {"x": "}"}}),
    ],
)
def test_extract_json_finds_the_value(text: str, value: object) -> None:
    assert extract_json(text) == value


@pytest.mark.parametrize("text", ["", "no json here", '{"cut": "at max tok', "```json\n{\"a\": \n```"])
def test_extract_json_raises_when_there_is_none(text: str) -> None:
    with pytest.raises(ValueError):
        extract_json(text)


# --- normalize_label ---

@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("card_arrival", "card_arrival"),
        ("  Card Arrival.  ", "card_arrival"),
        ('"CARD-ARRIVAL"', "card_arrival"),
        ("Label: lost or stolen card", "lost_or_stolen_card"),
        ("Answer: `top_up_failed`!", "top-up failed"),
        ("**card**", "card"),
        ("none", "NONE"),
        ("card_arrival\n\nThe customer asks where the card is; not a lost card.", "card_arrival"),
        ("I think the intent is card arrival.", "card_arrival"),  # "card" inside "card arrival" gives way
        ("The customer's card_arrival is late", "card_arrival"),  # '_' joins: no bare "card" here
        ("It is about a card.", "card"),
    ],
)
def test_normalize_label_finds_the_label(text: str, label: str) -> None:
    assert normalize_label(text, LABELS) == label


@pytest.mark.parametrize(
    "text",
    [
        "",
        "cardboard",  # not a whole word
        "either card_arrival or lost_or_stolen_card",  # two labels
        "something else entirely",
    ],
)
def test_normalize_label_returns_none_when_unsure(text: str) -> None:
    assert normalize_label(text, LABELS) is None


# --- parse_pick ---

@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("3", 3),
        ("3.", 3),
        ("Answer: 3", 3),
        (" #2 ", 2),
        ("Candidate 1 fits best.", 1),
        ("NONE", "NONE"),
        ("none", "NONE"),
        ("None of the candidates match.", "NONE"),
        ("7", None),  # out of range
        ("0", None),
        ("2 or 3", None),  # ambiguous
        ("3, or maybe none", None),  # a number and NONE
        ("", None),
        ("the second one", None),
    ],
)
def test_parse_pick(text: str, answer: int | str | None) -> None:
    assert parse_pick(text, 5, "NONE") == answer


def test_parse_pick_uses_the_tasks_none_label() -> None:
    assert parse_pick("no_match", 3, "NO_MATCH") == "NO_MATCH"
    assert parse_pick("none", 3, "NO_MATCH") == "NO_MATCH"


# --- looks_like_refusal ---

@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I cannot classify this.",
        "I can’t do that",  # typographic apostrophe
        "As an AI, I ...",
        "I am unable to answer.",
        "I apologize, but no.",
    ],
)
def test_refusals_are_recognised(text: str) -> None:
    assert looks_like_refusal(text)


@pytest.mark.parametrize("text", ["card_arrival", '{"name": "Ann"}', "The AI cannot be blamed; 3", "3"])
def test_answers_are_not_refusals(text: str) -> None:
    assert not looks_like_refusal(text)


# --- parse_output: answers and causes ---

def test_failure_causes_are_the_documented_ones() -> None:
    assert FAILURE_CAUSES == ("error", "empty_after_thinking", "cut_at_max_tokens", "refused", "unparseable",
                              "schema_invalid", "wrong_answer")


@pytest.mark.parametrize(
    ("text", "finish", "answer", "cause"),
    [
        ("card_arrival", "stop", "card_arrival", None),
        ("<think>lost? no</think>Card arrival.", "stop", "card_arrival", None),
        ("card_arrival", "length", "card_arrival", None),  # cut, but the answer was already there
        ("NONE", "stop", "NONE", None),
        ("card_arrival", "error", None, "error"),
        ("<think>hmm</think>", "stop", None, "empty_after_thinking"),
        ("<think>still going when the budget ran", "length", None, "empty_after_thinking"),
        ("The customer seems to be asking about the", "length", None, "cut_at_max_tokens"),
        ("I'm sorry, I can't help with that.", "stop", None, "refused"),
        ("banana", "stop", None, "unparseable"),
    ],
)
def test_parse_output_classify(classify_task: Task, text: str, finish: str, answer: str | None,
                               cause: str | None) -> None:
    parsed = parse_output(classify_task, {"text": "where is my card"}, _resp(text, finish))
    assert (parsed.answer, parsed.cause) == (answer, cause)
    assert parsed.cause is None or parsed.cause in FAILURE_CAUSES


def test_parse_output_keeps_the_visible_text(classify_task: Task) -> None:
    parsed = parse_output(classify_task, {}, _resp("<think>x</think>  card_arrival  "))
    assert parsed == Parsed(answer="card_arrival", cause=None, visible="card_arrival")


@pytest.mark.parametrize(
    ("text", "finish", "answer", "cause"),
    [
        ("2", "stop", 2, None),
        ("NONE", "stop", "NONE", None),
        ("4", "stop", None, "unparseable"),  # only three candidates
        ("1 or 2", "stop", None, "unparseable"),
        ("Looking at candidate", "length", None, "cut_at_max_tokens"),
    ],
)
def test_parse_output_pick(pick_task: Task, text: str, finish: str, answer: int | str | None,
                           cause: str | None) -> None:
    inputs = {"query": "q", "candidates": ["a", "b", "c"]}
    parsed = parse_output(pick_task, inputs, _resp(text, finish))
    assert (parsed.answer, parsed.cause) == (answer, cause)


@pytest.mark.parametrize(
    ("text", "finish", "answer", "cause"),
    [
        ('{"name": "Ann", "age": 3}', "stop", {"name": "Ann", "age": 3}, None),
        ('Sure! ```json\n{"name": "Ann", "age": 3}\n```', "stop", {"name": "Ann", "age": 3}, None),
        ('{"name": "Ann"}', "stop", {"name": "Ann"}, "schema_invalid"),  # kept, for field-level credit
        ('{"name": "Ann", "age": "three"}', "length", {"name": "Ann", "age": "three"}, "cut_at_max_tokens"),
        ('{"name": "Ann", "ag', "length", None, "cut_at_max_tokens"),
        ('{"name": "Ann", "ag', "stop", None, "unparseable"),
        ("As an AI language model I cannot extract personal data.", "stop", None, "refused"),
    ],
)
def test_parse_output_extract(extract_task: Task, text: str, finish: str, answer: object,
                              cause: str | None) -> None:
    assert extract_task.schema == SCHEMA
    parsed = parse_output(extract_task, {"text": "Ann is 3"}, _resp(text, finish))
    assert (parsed.answer, parsed.cause) == (answer, cause)


@pytest.mark.parametrize(
    ("text", "finish", "answer", "cause"),
    [
        ("# Report\nAll good.", "stop", "# Report\nAll good.", None),
        ("<think>plan</think># Report", "stop", "# Report", None),
        ("# Report\nhalf a sent", "length", "# Report\nhalf a sent", None),  # the format rules judge it
        ("", "stop", None, "unparseable"),
        ("<think>plan", "length", None, "empty_after_thinking"),
    ],
)
def test_parse_output_generate(generate_task: Task, text: str, finish: str, answer: str | None,
                               cause: str | None) -> None:
    parsed = parse_output(generate_task, {"text": "x"}, _resp(text, finish))
    assert (parsed.answer, parsed.cause) == (answer, cause)

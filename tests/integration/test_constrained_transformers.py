"""The transformers backend answers in batches and honours constraints, as llama.cpp's grammars do.

On the tiny model's F16 GGUF (tests/tiny_model.py: SmolLM2's tokenizer and template, random weights, so its free
answers are neither labels nor JSON): a batch gives the same greedy answers as one request at a time; a choice
constraint keeps every answer inside the answer space, a JSON-schema one gives schema-valid JSON; a constraint a
backend cannot honour is refused before any answer is asked; an evaluation records what it decoded with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from honed.task.spec import load_task
from honed.types import Constraint, Message, Request, Sampling
from tests.conftest import CLASSIFY_ROWS, CLASSIFY_TOML, write_task

pytestmark = pytest.mark.integration
pytest.importorskip("transformers", reason="the transformers backend needs honed[train]")

from honed.backends.transformers import TransformersBackend

SORTER = "You sort customer messages. Answer with one label only: billing, shipping, or NONE."
MESSAGES = ["I was charged twice for my order", "Where is my parcel?", "What is the weather tomorrow?",
            "Refund my payment please, the second charge on my card was a mistake", "My package arrived damaged"]
CHOICES = ("billing", "shipping", "NONE")


def _requests(constraint: Constraint | None = None, max_tokens: int = 12) -> list[Request]:
    return [Request(messages=(Message("system", SORTER), Message("user", m)), sampling=Sampling(max_tokens=max_tokens),
                    constraint=constraint) for m in MESSAGES]


@pytest.fixture(scope="module")
def hf(tiny_model: Any) -> Iterator[TransformersBackend]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # steady on a shared 2-core machine (see test_transformers_backend)
    with TransformersBackend(str(tiny_model.gguf)) as b:
        yield b
    torch.set_num_threads(before)


def test_a_batch_answers_as_one_request_at_a_time(hf: TransformersBackend) -> None:
    requests = _requests()
    batched = hf.generate(requests)
    alone = [hf.generate([r])[0] for r in requests]
    assert [r.text for r in batched] == [r.text for r in alone]
    assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in alone]
    assert [r.finish_reason for r in batched] == [r.finish_reason for r in alone]
    # the prompts differ in length: the batch was left-padded, and no answer saw the padding
    assert len({r.prompt_tokens for r in batched}) > 1


def test_a_choice_constraint_keeps_every_answer_in_the_answer_space(hf: TransformersBackend) -> None:
    free = hf.generate(_requests())
    constrained = hf.generate(_requests(Constraint("choice", choices=CHOICES)))
    assert any(r.text not in CHOICES for r in free)  # unconstrained, the random model writes anything
    assert all(r.text in CHOICES for r in constrained), [r.text for r in constrained]
    tok = hf.tokenizer
    for r in constrained:  # the choice's own tokens, then the end of the turn, nothing else
        assert r.finish_reason == "stop"
        assert r.completion_tokens == len(tok.encode(r.text, add_special_tokens=False)) + 1
    alone = [hf.generate([q])[0].text for q in _requests(Constraint("choice", choices=CHOICES))]
    assert alone == [r.text for r in constrained]


GRAPH = {"type": "object", "required": ["entities"], "additionalProperties": False,
         "properties": {"entities": {"type": "array", "maxItems": 3, "items": {
             "type": "object", "required": ["name", "type"], "additionalProperties": False,
             "properties": {"name": {"type": "string", "maxLength": 20},
                            "type": {"type": "string", "enum": ["service", "datastore"]}}}}}}


def test_a_json_schema_constraint_gives_schema_valid_json(hf: TransformersBackend) -> None:
    import json

    import jsonschema

    ask = "List the services and datastores as JSON: the checkout service stores orders in Postgres."
    free = Request(messages=(Message("user", ask),), sampling=Sampling(max_tokens=80))
    schema = Request(messages=free.messages, sampling=free.sampling, constraint=Constraint("json_schema", schema=GRAPH))
    loose, bound = hf.generate([free, schema])
    with pytest.raises((json.JSONDecodeError, jsonschema.ValidationError)):  # unconstrained: no JSON
        jsonschema.validate(json.loads(loose.text), GRAPH)
    assert bound.finish_reason == "stop", bound.text
    jsonschema.validate(json.loads(bound.text), GRAPH)


def test_a_constrained_evaluation_records_it_and_answers_only_labels(hf: TransformersBackend, tmp_path: Path) -> None:
    from honed.evaluate.runner import evaluate

    toml = CLASSIFY_TOML + "[generation]\nconstrained = true\nmax_tokens = 12\n"
    task = load_task(write_task(tmp_path / "mini", toml, {"test": CLASSIFY_ROWS}))
    result = evaluate(task, hf, "test", write_run=False)
    assert result.doc["settings"]["constrained"] is True and result.doc["settings"]["batch"] == hf.max_batch
    assert all(r.cause in (None, "wrong_answer") for r in result.records)
    assert {r.answer for r in result.records} <= {"billing", "shipping", "NONE"}
    free = evaluate(task, hf, "test", constrained=False, write_run=False)
    assert free.doc["settings"]["constrained"] is False

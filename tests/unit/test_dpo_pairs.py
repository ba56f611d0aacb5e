"""DPO preference pairs built from the task: the expected answer over the model's own mistake, hard negatives
(a false NONE, a false pick) where the model was right; both sides rendered like SFT completions."""

from __future__ import annotations

import pytest

from honed.task.data import load_items
from honed.task.spec import load_task
from honed.task.chat import ChatFormat
from honed.train.dataset import render_completion
from honed.train.dpo import build_pairs
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.unit

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TPL = ChatFormat(chat_template=CHATML, bos_token="", eos_token="<|im_end|>", eos_token_id=2)


def _items():
    task = load_task(EXAMPLES / "classify")
    items = load_items(task, "train")
    real = next(i for i in items if i.expected != "NONE")
    none = next(i for i in items if i.expected == "NONE")
    return task, real, none


def test_wrong_answer_is_rejected_and_expected_chosen() -> None:
    task, real, _ = _items()
    wrong = next(label for label in task.labels if label != real.expected)
    [pair] = build_pairs(task, [real], [(wrong, "stop")], TPL)
    assert pair.source == "model_wrong"
    assert pair.chosen == f"{real.expected}<|im_end|>"
    assert pair.rejected == f"{wrong}<|im_end|>"
    assert pair.prompt == render_completion(task, real.inputs, real.expected, TPL)[0]
    assert pair.prompt.endswith("<|im_start|>assistant\n")


def test_prose_is_rejected_as_written() -> None:
    task, real, _ = _items()
    prose = "I think this message is about something else entirely, let me explain"
    [pair] = build_pairs(task, [real], [(prose, "length")], TPL)
    assert pair.source == "model_invalid"
    assert pair.rejected == prose + "<|im_end|>"


def test_correct_answers_get_hard_negatives() -> None:
    task, real, none = _items()
    pairs = build_pairs(task, [real, none], [(real.expected, "stop"), ("NONE", "stop")], TPL, seed=3)
    by_id = {p.id: p for p in pairs}
    assert by_id[real.id].source == "hard_false_none"
    assert by_id[real.id].rejected == "NONE<|im_end|>"  # seed 000: prefer the real pick over a false NONE
    assert by_id[none.id].source == "hard_false_pick"
    rejected_label = by_id[none.id].rejected.removesuffix("<|im_end|>")
    assert rejected_label in task.labels and rejected_label != "NONE"


def test_without_hard_negatives_correct_answers_give_no_pair() -> None:
    task, real, none = _items()
    assert build_pairs(task, [real, none], [(real.expected, "stop"), ("NONE", "stop")], TPL,
                       hard_negatives=False) == []

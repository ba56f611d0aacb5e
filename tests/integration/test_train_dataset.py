"""Training examples as the trainer sees them, with SmolLM2's real tokenizer (the tiny model's, tests/tiny_model.py): completion-only masking with the
terminator learned, over-long completions skipped (never cut), prompts middle-truncated, and the train/serve
template identity check."""

from __future__ import annotations

from dataclasses import replace

import pytest

from honed.task.data import Item, load_items
from honed.task.spec import load_task
from honed.task.chat import from_tokenizer, read_gguf
from honed.train.dataset import TemplateMismatch, encode, middle_truncate, render_completion
from honed.train.session import serving_check
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smol(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model.hf)
    return tok, from_tokenizer(tok, read_gguf(tiny_model.gguf).chat_template)  # the GGUF's template, trained


def test_completion_mask_covers_answer_and_terminator(smol) -> None:
    tok, tpl = smol
    task = load_task(EXAMPLES / "classify")
    items = load_items(task, "train")[:5]
    encoded, report = encode(task, items, tpl, max_length=512)
    assert report.kept == 5 and not report.skipped_long_completion
    for e, item in zip(encoded, items):
        learned = [t for t, m in zip(e.input_ids, e.completion_mask) if m]
        assert learned[-1] == tok.convert_tokens_to_ids("<|im_end|>")  # the model learns to stop
        assert tok.decode(learned[:-1]) == item.expected  # and the answer, nothing of the prompt
        assert e.completion_mask == [0] * e.n_prompt + [1] * e.n_completion
        prompt_text = tok.decode(e.input_ids[: e.n_prompt])
        assert prompt_text.endswith("<|im_start|>assistant\n") and item.inputs["text"] in prompt_text


def test_long_completion_skipped_never_cut_and_prompt_middle_truncated(smol) -> None:
    tok, tpl = smol
    task = load_task(EXAMPLES / "generate")
    items = load_items(task, "train")[:3]
    long_item = Item(id="long", inputs=items[0].inputs, expected="SEVERITY: LOW\nCOMPONENT: db\nSUMMARY: " +
                     "very " * 400 + "long.", line=0)
    sizes = [len(e.input_ids) for e in encode(task, items, tpl, 4096)[0]]
    encoded, report = encode(task, items + [long_item], tpl, max_length=max(sizes) - 10)
    assert report.skipped_long_completion == ["long"]
    assert all(e.id != "long" for e in encoded)
    assert report.prompt_truncated  # the longest ordinary example lost part of its prompt, not its answer
    for e in encoded:
        assert len(e.input_ids) <= max(sizes) - 10
        full = encode(task, [i for i in items if i.id == e.id], tpl, 4096)[0][0]
        assert e.input_ids[-e.n_completion:] == full.input_ids[-full.n_completion:]  # the completion is whole
    assert middle_truncate(list(range(10)), 6) == [0, 1, 6, 7, 8, 9]


def test_template_mismatch_refused(smol, tiny_model) -> None:
    tok, tpl = smol
    gguf = tiny_model.gguf  # what it would be served as: the tiny model's GGUF (llama.cpp reads its vocab only)
    task = load_task(EXAMPLES / "classify")
    item = load_items(task, "train")[0]
    serving_check(task, str(gguf), item, tpl)  # the pair the tiny model was built as matches
    wrong = replace(tpl, chat_template=tpl.chat_template.replace("<|im_start|>", "<|im_start|> "))
    with pytest.raises(TemplateMismatch, match="train/serve template mismatch"):
        serving_check(task, str(gguf), item, wrong)
    prompt, completion = render_completion(task, item.inputs, item.expected, tpl)
    assert completion == item.expected + "<|im_end|>"

"""The template round trip on the tiny model's GGUF (tests/tiny_model.py: SmolLM2's tokenizer and chat template,
written by llama.cpp's converter; vocab only, seconds): the generated Modelfile passes, and
planted mismatches — a wrong stop token, a template missing one newline, a non-terminating GGUF — are refused
with a diff that names the first differing token. The GGUF of another vocabulary is the real Gemma 3 270M base
(read with its vocabulary only), the one such file installed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from honed.backends.models import resolve_gguf
from honed.exporting.modelfile import FAMILIES, Modelfile, detect_family, generate_modelfile
from honed.exporting.template import GgufVocab, TemplateRoundTripError, round_trip, training_tokenizer
from honed.task.data import load_items
from honed.task.spec import load_task
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def setup(tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("rt") / "task"
    shutil.copytree(EXAMPLES / "classify", root)
    task = load_task(root)
    return {"task": task, "items": load_items(task, "test")[:4], "tok": training_tokenizer(str(tiny_model.hf)),
            "gguf": tiny_model.gguf}


def _modelfile(**changes: object) -> Modelfile:
    mf = generate_modelfile(FAMILIES["chatml"], from_="x.gguf", eos_text="<|im_end|>", system=DEFAULT_SYSTEM,
                            temperature=0.0, num_ctx=1024, num_predict=32)
    for k, v in changes.items():
        setattr(mf, k, v)
    return mf


def test_generated_modelfile_round_trips(setup: dict) -> None:
    vocab = GgufVocab(setup["gguf"])
    assert detect_family(vocab.template).name == "chatml"
    vocab.close()
    checked = round_trip(setup["task"], setup["items"], setup["tok"], [setup["gguf"]], _modelfile())
    assert checked["passed"] and checked["terminator"] == "<|im_end|>" and checked["terminator_id"] == 2
    assert checked["items"] == [i.id for i in setup["items"]]


def test_wrong_stop_token_is_refused(setup: dict) -> None:
    mf = _modelfile(parameters=[("stop", "</s>"), ("temperature", "0")])
    with pytest.raises(TemplateRoundTripError) as exc:
        round_trip(setup["task"], setup["items"], setup["tok"], [setup["gguf"]], mf)
    msg = str(exc.value)
    assert "lack the training terminator '<|im_end|>'" in msg and "endless output" in msg
    assert "PARAMETER stop '</s>' is neither" in msg


def test_template_missing_a_newline_is_refused_with_the_token_diff(setup: dict) -> None:
    mf = _modelfile(template=FAMILIES["chatml"].template.replace("<|im_start|>assistant\n", "<|im_start|>assistant"))
    with pytest.raises(TemplateRoundTripError) as exc:
        round_trip(setup["task"], setup["items"], setup["tok"], [setup["gguf"]], mf)
    msg = str(exc.value)
    first = setup["items"][0].id
    assert f"item {first}: training and Modelfile TEMPLATE differ at token" in msg
    assert "in the prompt" in msg and "assistant\\n" in msg  # the training side's text around the difference


def test_missing_system_turn_is_refused(setup: dict) -> None:
    with pytest.raises(TemplateRoundTripError, match="differ at token 1 in the prompt"):
        round_trip(setup["task"], setup["items"], setup["tok"], [setup["gguf"]], _modelfile(system=None))


def test_unsupported_go_template_is_refused(setup: dict) -> None:
    from honed.errors import UserError

    mf = _modelfile(template="{{ range .Messages }}{{ .Content }}{{ end }}")
    with pytest.raises(UserError, match="outside what honed can check"):
        round_trip(setup["task"], setup["items"], setup["tok"], [setup["gguf"]], mf)


def test_gguf_whose_template_differs_is_refused(setup: dict, tmp_path: Path) -> None:
    """A GGUF whose chat template no longer matches training (here: the Gemma base, another vocabulary)."""
    from honed.errors import UserError

    try:
        other = resolve_gguf("gemma3-270m")
    except UserError:
        pytest.skip("gemma3-270m is not installed")
    with pytest.raises(TemplateRoundTripError, match="differ at token 0"):
        round_trip(setup["task"], setup["items"][:1], setup["tok"], [other], None)

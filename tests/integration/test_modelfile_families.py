"""The template round trip for the Llama 3, Mistral and Phi-3 families, on tiny models built here: the tiny model
of tests/tiny_model.py with each family's special tokens, BOS/EOS and chat template (written after the published
ones in tests/unit/test_modelfile_families.py: no hub is reachable), converted to a GGUF by llama.cpp's converter.
The generated Modelfile passes training vs GGUF vs Modelfile; the other Mistral layout, one space apart, fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from honed.exporting.modelfile import FAMILIES, detect_family, generate_modelfile
from honed.exporting.template import GgufVocab, TemplateRoundTripError, round_trip, training_tokenizer
from honed.task.data import load_items
from honed.task.prompt import build_messages
from honed.task.spec import load_task
from tests.conftest import EXAMPLES
from tests.unit.test_modelfile_families import LLAMA3, MISTRAL_V1, MISTRAL_V3, PHI3

pytestmark = pytest.mark.integration

# family: (chat template, special tokens, bos, eos, the GGUF adds BOS, the task's system message kept)
SPECS = {
    "llama3": (LLAMA3, ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|begin_of_text|>", "<|eot_id|>", True, True),
    "mistral": (MISTRAL_V3, ["<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>", True, False),
    "mistral-v1": (MISTRAL_V1, ["<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>", True, False),
    "phi3": (PHI3, ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], None, "<|end|>", False, True),
}


def build_family(tiny: Any, name: str, out: Path) -> tuple[Path, Path]:
    """The tiny model re-dressed as `name`: (HF folder, F16 GGUF)."""
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from honed.exporting.convert import convert_to_gguf

    template, specials, bos, eos, add_bos, _ = SPECS[name]
    tok = AutoTokenizer.from_pretrained(tiny.hf)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
    if bos:
        tok.bos_token = bos
    tok.eos_token = eos
    tok.chat_template = template
    model = AutoModelForCausalLM.from_pretrained(tiny.hf)
    model.resize_token_embeddings(len(tok))
    model.config.bos_token_id, model.config.eos_token_id = tok.bos_token_id, tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    # a neutral name: llama.cpp keys per-model token rules on general.name ("phi3" would ask for Phi-3's "</s>",
    # which SmolLM2's vocabulary lacks), and the converter takes the name from the folder
    folder = out / f"tiny-family-{list(SPECS).index(name)}"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["add_bos_token"] = add_bos  # what the converter writes as tokenizer.ggml.add_bos_token
    cfg_path.write_text(json.dumps(cfg))
    return folder, convert_to_gguf(folder, out / f"{folder.name}.F16.gguf").path


@pytest.fixture(scope="module")
def families(tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    out = tmp_path_factory.mktemp("families")
    return {name: build_family(tiny_model, name, out) for name in SPECS}


def _task(tmp_path: Path, keep_system: bool) -> Any:
    """examples/classify: its tuned prompt carries a system message, its base prompt none (Mistral's templates
    take none into a trained turn)."""
    root = tmp_path / "task"
    shutil.copytree(EXAMPLES / "classify", root)
    task = load_task(root, prompt="tuned" if keep_system else "base")
    roles = [m.role for m in build_messages(task, load_items(task, "test")[0].inputs)]
    assert ("system" in roles) is keep_system
    return task


@pytest.mark.parametrize("name", list(SPECS))
def test_family_modelfile_round_trips(families: dict, name: str, tmp_path: Path) -> None:
    folder, gguf = families[name]
    *_, eos, add_bos, keep_system = SPECS[name]
    vocab = GgufVocab(gguf)
    try:
        assert detect_family(vocab.template).name == name
        assert bool(vocab.llm._model.add_bos_token()) is add_bos  # as the family's real GGUFs say
    finally:
        vocab.close()
    task = _task(tmp_path, keep_system)
    items = load_items(task, "test")[:3]
    mf = generate_modelfile(FAMILIES[name], from_=gguf.name, eos_text=eos, system=None, temperature=0.0,
                            num_ctx=1024, num_predict=16)
    checked = round_trip(task, items, training_tokenizer(str(folder)), [gguf], mf)
    assert checked["passed"] and checked["terminator"] == eos
    assert checked["modelfile"]["stops"][0] == eos


def test_the_other_mistral_layout_is_refused(families: dict, tmp_path: Path) -> None:
    folder, gguf = families["mistral"]
    task = _task(tmp_path, keep_system=False)
    items = load_items(task, "test")[:1]
    wrong = generate_modelfile(FAMILIES["mistral-v1"], from_=gguf.name, eos_text="</s>", system=None,
                               temperature=0.0, num_ctx=1024, num_predict=16)
    with pytest.raises(TemplateRoundTripError, match="training and Modelfile TEMPLATE differ at token"):
        round_trip(task, items, training_tokenizer(str(folder)), [gguf], wrong)

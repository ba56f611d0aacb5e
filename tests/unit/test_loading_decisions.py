"""What `honed.train.loading` decides before any model loads: what QLoRA needs from this machine, which names are
Hugging Face hub ids, and the one-line errors when a hub id cannot be had."""

from __future__ import annotations

import importlib.util

import pytest

from honed.errors import ModelNotFound, UserError
from honed.train.loading import hub_offline, is_hub_id, load_base, qlora_config, qlora_missing

pytestmark = pytest.mark.unit


def test_qlora_names_what_this_machine_lacks() -> None:
    torch = pytest.importorskip("torch")
    missing = qlora_missing()
    no_cuda = not torch.cuda.is_available()
    no_bnb = importlib.util.find_spec("bitsandbytes") is None
    assert any("CUDA GPU" in m for m in missing) == no_cuda
    assert any('pip install "honed[qlora]"' in m for m in missing) == no_bnb
    if not missing:
        pytest.skip("this machine can run QLoRA: nothing to refuse")
    with pytest.raises(UserError) as err:
        qlora_config()
    message = str(err.value)
    assert message.startswith("--method qlora needs ") and "--method lora" in message
    assert ("CUDA" in message) == no_cuda and ("bitsandbytes" in message) == no_bnb


@pytest.mark.parametrize(("name", "is_hub"), [
    ("Qwen/Qwen2.5-1.5B-Instruct", True), ("meta-llama/Llama-3.2-3B-Instruct", True),
    ("smollm2-135m", False), ("./models/x", False), ("/abs/path/model", False), ("a/b/c", False),
    ("org/", False), ("models/missing.gguf", False),
])
def test_hub_id_shape(name: str, is_hub: bool) -> None:
    assert is_hub_id(name) is is_hub


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("TRUE", True), ("yes", True), ("on", True),
                                                ("0", False), ("", False), ("false", False)])
def test_hub_offline_reads_the_variable_now(monkeypatch: pytest.MonkeyPatch, value: str, offline: bool) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline


def test_offline_hub_id_error_names_the_id_and_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound) as err:
        load_base("honed-tests/no-such-model-1b")
    message = str(err.value)
    assert "'honed-tests/no-such-model-1b'" in message and "HF_HUB_OFFLINE is set" in message
    assert "local checkpoint folder" in message


def test_unreachable_hub_error_names_the_id_and_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens, refused at once
    with pytest.raises(ModelNotFound) as err:
        load_base("honed-tests/no-such-model-1b")
    message = str(err.value)
    assert "'honed-tests/no-such-model-1b': could not download it from http://127.0.0.1:9" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_a_gguf_path_that_is_missing_is_not_taken_for_a_hub_id(tmp_path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(ModelNotFound, match="not found"):
        load_base("models/missing.gguf")


def test_a_folder_without_config_is_named_as_such(tmp_path) -> None:
    pytest.importorskip("transformers")
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelNotFound, match="folder without config.json"):
        load_base(str(tmp_path / "weights"))

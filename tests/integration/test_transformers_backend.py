"""TransformersBackend on a GGUF (transformers' GGUF loader), checked against llama.cpp on the same file: the tiny
model's F16 GGUF (tests/tiny_model.py; SmolLM2's architecture and tokenizer). Both engines compute the same F16
weights, so their logits agree far closer than on the shipped Q4_1 SmolLM2."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from honed.backends.llamacpp import LlamaCppBackend
from honed.backends.models import file_sha256
from honed.errors import MissingDependency, ModelNotFound
from honed.types import Message, Request, Sampling

pytestmark = pytest.mark.integration
pytest.importorskip("transformers", reason="the transformers backend needs honed[train]")
pytest.importorskip("peft", reason="the adapter tests need honed[train]")

from honed.backends.transformers import TransformersBackend, checkpoint_sha256

SORTER = "You sort customer messages. Answer with one label only: billing, shipping, or NONE."
MESSAGES = ["I was charged twice for my order", "Where is my parcel?", "What is the weather tomorrow?",
            "Refund my payment please", "My package arrived damaged"]
REQUESTS = [Request(messages=(Message("system", SORTER), Message("user", m)), sampling=Sampling(max_tokens=8))
            for m in MESSAGES]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """As for llama.cpp: on a shared 2-core machine, 2 OpenMP threads spin-wait whenever another process takes
    a core (this module went from 1 to 4-5 minutes); one thread is steady."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gguf(tiny_model: Any) -> Path:
    return tiny_model.gguf


@pytest.fixture(scope="module")
def hf(gguf: Path) -> Iterator[TransformersBackend]:
    with TransformersBackend(str(gguf)) as b:
        yield b


@pytest.fixture(scope="module")
def llama(gguf: Path) -> Iterator[LlamaCppBackend]:
    with LlamaCppBackend(str(gguf), n_ctx=2048, n_threads=1) as b:  # 1 thread: see test_openai_backend
        yield b


@pytest.fixture(scope="module")
def pairs(hf: TransformersBackend, llama: LlamaCppBackend) -> list[tuple]:
    return list(zip(hf.generate(REQUESTS), llama.generate(REQUESTS)))


@pytest.fixture(scope="module")
def adapter(hf: TransformersBackend, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LoRA (r=2 on q_proj, B not zero so it changes outputs), built on a random model of the
    same shapes: an adapter depends only on the shapes of the layers it wraps."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    skeleton = AutoModelForCausalLM.from_config(hf._net.config)
    lora = get_peft_model(skeleton, LoraConfig(r=2, lora_alpha=16, target_modules=["q_proj"],
                                               init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter")
    with warnings.catch_warnings():  # "could not find a config file" of the skeleton's (GGUF) folder
        warnings.simplefilter("ignore")
        lora.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tuned(adapter: Path, gguf: Path) -> Iterator[TransformersBackend]:
    with TransformersBackend(str(gguf), adapter=str(adapter)) as b:
        yield b


def test_describes_the_model(hf: TransformersBackend, gguf: Path) -> None:
    assert hf.in_process and hf.streams and hf.supports_schema and hf.supports_choice
    assert hf.max_concurrency == 1
    assert hf.info.sha256 == file_sha256(gguf) and hf.info.path == str(gguf)
    assert hf.info.details["source"] == "gguf" and hf.info.details["dtype"] == "float32"
    assert hf.cache_identity() == f"transformers:{file_sha256(gguf)}"  # never llama.cpp's cached answers


def test_same_prompt_text_and_token_ids_as_llamacpp(pairs: list[tuple], hf: TransformersBackend,
                                                    llama: LlamaCppBackend) -> None:
    for h, lo in pairs:
        assert h.prompt_text == lo.prompt_text
        assert hf.tokenize(h.prompt_text) == llama.tokenize(lo.prompt_text)
        assert h.prompt_tokens == lo.prompt_tokens > 0


def test_greedy_answers_mostly_equal_llamacpp(pairs: list[tuple]) -> None:
    # The same F16 weights in both engines (llama.cpp multiplies them with F16 activations, transformers in
    # float32): the logits differ by ~0.01 (on SmolLM2's Q4_1 file by 0.1-0.35), so only a near-tie closer than
    # that, somewhere in 8 tokens, can part two answers. The logits check below is the strict one.
    same = sum(h.text == lo.text for h, lo in pairs)
    assert same >= 4, [(h.text, lo.text) for h, lo in pairs]


def test_same_logits_as_llamacpp_within_half_precision_noise(hf: TransformersBackend, gguf: Path,
                                                               tuned: TransformersBackend) -> None:
    # Same token ids into both engines, logits compared at every position (on SmolLM2's Q4_1 file: mean |Δ| 0.16,
    # argmax agreement 0.92-0.95). The random LoRA below stands in for a wrong weight, norm or RoPE setting: the
    # same comparison must fail for it, or the check could not fail at all.
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, logits_all=True, n_threads=1,
                          n_threads_batch=1, verbose=False)
    try:
        for req in REQUESTS:
            ids = hf.tokenize(hf.render(req))
            llm.reset()
            llm.eval(ids)
            ref = np.array(llm.scores[: len(ids)])
            ours = hf.logits(ids).numpy()
            assert np.abs(ref - ours).mean() < 0.05
            assert (ref.argmax(1) == ours.argmax(1)).mean() >= 0.95
            wrong = tuned.logits(ids).numpy()
            assert np.abs(ref - wrong).mean() > 0.05
    finally:
        llm.close()


def test_timings_and_exact_counts(pairs: list[tuple], hf: TransformersBackend) -> None:
    for h, _ in pairs:
        assert h.error is None and h.ttft_s is not None and 0 < h.ttft_s <= h.latency_s
        if h.finish_reason == "length":
            assert h.completion_tokens == 8
        else:  # the answer's tokens and the end-of-turn token
            assert h.completion_tokens == len(hf.tokenize(h.text)) + 1
    assert {h.finish_reason for h, _ in pairs} <= {"stop", "length"}


@pytest.mark.parametrize("engine", ["hf", "llama"])
def test_stop_strings_end_the_answer(engine: str, request: pytest.FixtureRequest) -> None:
    backend = request.getfixturevalue(engine)
    messages = (Message("user", "Count from 1 to 20, one number per line."),)
    free = backend.generate([Request(messages=messages, sampling=Sampling(max_tokens=24))])[0].text
    words = free.split()
    stop = words[len(words) // 2]  # a piece from the middle of the engine's own free answer
    want = free[:free.index(stop)]
    got = backend.generate([Request(messages=messages, sampling=Sampling(max_tokens=24, stop=(stop,)))])[0]
    assert got.finish_reason == "stop" and got.text == want and stop not in got.text


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(hf: TransformersBackend) -> None:
    import torch

    def sample(seed: int) -> str:
        req = Request(messages=(Message("user", "Say hi"),), sampling=Sampling(max_tokens=24, temperature=1.0,
                                                                                seed=seed))
        return hf.generate([req])[0].text

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = sample(3), sample(3), sample(4)
    assert torch.equal(torch.rand(3), expected)
    assert a == b and a != c


def test_an_adapter_changes_the_identity_and_the_outputs(hf: TransformersBackend, tuned: TransformersBackend,
                                                         adapter: Path, pairs: list[tuple]) -> None:
    assert tuned.info.sha256 != hf.info.sha256 and tuned.cache_identity() != hf.cache_identity()
    assert tuned.info.details["base_sha256"] == hf.info.sha256
    assert tuned.info.details["adapter"] == str(adapter.resolve())
    ids = hf.tokenize(hf.render(REQUESTS[0]))
    assert not hf.logits(ids).allclose(tuned.logits(ids), atol=1e-3)
    new = tuned.generate(REQUESTS)
    assert sum(h.text != n.text for (h, _), n in zip(pairs, new)) >= 3


def test_a_checkpoint_folder_loads_with_its_own_sha256(hf: TransformersBackend, pairs: list[tuple],
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    hf._net.save_pretrained(folder)
    hf._tok.save_pretrained(folder)
    with TransformersBackend(str(folder)) as ckpt:
        assert ckpt.info.details["source"] == "checkpoint"
        assert ckpt.info.sha256 == checkpoint_sha256(folder) != hf.info.sha256
        assert ckpt.generate(REQUESTS[:1])[0].text == pairs[0][0].text  # the same weights, the same answer


def test_bad_folders_are_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no config.json"):
        TransformersBackend(str(tmp_path))
    with pytest.raises(ModelNotFound, match="not a PEFT adapter"):
        TransformersBackend("smollm2-135m", adapter=str(tmp_path))  # refused before the model loads


def test_missing_transformers_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # what `import transformers` sees when absent
    with pytest.raises(MissingDependency, match=r"honed\[train\]"):
        TransformersBackend("smollm2-135m")

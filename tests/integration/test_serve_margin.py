"""The margin signal's raw material, `LlamaCppBackend.choice_logprobs`, against an independent computation
(llama.cpp with logits for every position) on the tiny model's F16 GGUF (tests/tiny_model.py: SmolLM2's
tokenizer and template); and it leaves the KV cache usable."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from honed.backends.llamacpp import LlamaCppBackend
from honed.task.data import Item
from honed.task.prompt import build_request
from honed.task.spec import load_task
from honed.types import Sampling
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration


def _reference(path: str, prompt: list[int], choice: list[int]) -> float:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, logits_all=True, verbose=False, n_threads=2)
    try:
        llm.eval(prompt + choice)
        scores = np.asarray(llm.scores[: len(prompt) + len(choice)], dtype=np.float64)
    finally:
        llm.close()
    total = 0.0
    for j, tok in enumerate(choice):
        row = scores[len(prompt) - 1 + j]
        total += row[tok] - row.max() - np.log(np.exp(row - row.max()).sum())
    return float(total)


def test_choice_logprobs_match_a_full_logits_pass(tiny_model: Any) -> None:
    task = load_task(EXAMPLES / "classify")
    with LlamaCppBackend(str(tiny_model.gguf), n_threads=2) as b:
        req = build_request(task, Item("x", {"text": "The app crashes on login"}), Sampling(max_tokens=8),
                            constrained=True)
        first = b.generate([req])[0].text
        lps = b.choice_logprobs(req, task.labels)
        assert lps == b.choice_logprobs(req, task.labels)  # deterministic on a reused cache
        assert b.generate([req])[0].text == first  # the cache is still consistent for generation
        assert all(lp < 0 for lp in lps) and len(lps) == len(task.labels)
        prompt = b.tokenize(b.render(req))
        llm = b._llm
        for label in ("bug_report", "NONE"):
            toks = llm.tokenize(label.encode(), add_bos=False, special=False) + [llm.token_eos()]
            ref = _reference(b.info.path or "", prompt, toks)
            assert lps[task.labels.index(label)] == pytest.approx(ref, abs=2e-3)

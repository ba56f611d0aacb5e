"""Padding-free batches (what `honed tune` trains on, `packing = true`) must keep examples apart: on CPU with SDPA
there is no flash-attention varlen kernel, so this checks that transformers turns the reset position ids into a
block-diagonal mask. If it did not, every example would attend to the one before it and the tune bench's speed-up
would be a silent corruption. The mask is only built without a KV cache (transformers checks
`past_key_values is None`), which is how TRL's trainers call the model (`use_cache=False`): so is this test."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch")


def test_packed_examples_do_not_see_each_other() -> None:
    from honed.train.loading import load_base

    loaded = load_base("smollm2-135m")
    model, tok = loaded.model.eval(), loaded.tokenizer
    a = tok("The parcel never arrived and nobody answers my emails.", add_special_tokens=False)["input_ids"]
    b = tok("Please add a dark mode to the app.", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        alone_a = model(input_ids=torch.tensor([a]), use_cache=False).logits[0]
        alone_b = model(input_ids=torch.tensor([b]), use_cache=False).logits[0]
        packed = model(input_ids=torch.tensor([a + b]),
                       position_ids=torch.tensor([list(range(len(a))) + list(range(len(b)))]), use_cache=False).logits[0]
        leaky = model(input_ids=torch.tensor([a + b]), use_cache=False).logits[0]  # one long sequence: b sees a
    assert torch.allclose(packed[: len(a)], alone_a, atol=1e-4)
    assert torch.allclose(packed[len(a):], alone_b, atol=1e-4), "packed example b attended to example a"
    assert not torch.allclose(leaky[len(a):], alone_b, atol=1e-2)  # the check above can fail
    with torch.no_grad():  # with a KV cache (inference), the same call would NOT separate them
        cached = model(input_ids=torch.tensor([a + b]),
                       position_ids=torch.tensor([list(range(len(a))) + list(range(len(b)))])).logits[0]
    assert not torch.allclose(cached[len(a):], alone_b, atol=1e-2)

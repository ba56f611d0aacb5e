"""Padding-free batches (what `honed tune` trains on, `packing = true`) must keep examples apart: on CPU with SDPA
there is no flash-attention varlen kernel, so this checks that transformers turns the reset position ids into a
block-diagonal mask. If it did not, every example would attend to the one before it and the tune bench's speed-up
would be a silent corruption. On the tiny model (tests/tiny_model.py): SmolLM2's architecture, attention and
tokenizer, 2 layers. The mask is only built without a KV cache (transformers checks
`past_key_values is None`), which is how TRL's trainers call the model (`use_cache=False`): so is this test."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch")


def test_packed_examples_do_not_see_each_other(tiny_model: Any) -> None:
    from honed.train.loading import load_base

    loaded = load_base(str(tiny_model.hf))
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


def test_honed_loop_loss_equals_the_full_logits_loss_of_each_example_alone(tiny_model: Any) -> None:
    """What `honed.train.loop` computes for a packed batch (logits only at the completion positions, through the
    model's `logits_to_keep`) equals the completion-only loss of each example run alone with full logits."""
    from honed.train.dataset import Encoded
    from honed.train.loading import load_base
    from honed.train.loop import pack

    loaded = load_base(str(tiny_model.hf))
    model, tok = loaded.model.eval(), loaded.tokenizer
    rows = []
    for prompt, answer in (("Route: my parcel is late", "shipping<|im_end|>"),
                           ("Route: charged twice this month", "billing<|im_end|>")):
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(answer, add_special_tokens=False)["input_ids"]
        rows.append(Encoded("x", p + c, [0] * len(p) + [1] * len(c), len(p), len(c)))
    packed = pack(rows)
    with torch.no_grad():
        kept = model(input_ids=torch.tensor([packed.input_ids]), position_ids=torch.tensor([packed.position_ids]),
                     logits_to_keep=torch.tensor(packed.loss_positions), use_cache=False).logits[0]
        ours = torch.nn.functional.cross_entropy(kept, torch.tensor(packed.targets), reduction="sum")
        reference = 0.0
        for e in rows:
            full = model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0]
            where = [j - 1 for j in range(1, len(e.input_ids)) if e.completion_mask[j]]
            reference += float(torch.nn.functional.cross_entropy(
                full[where], torch.tensor([e.input_ids[j + 1] for j in where]), reduction="sum"))
    assert kept.shape == (len(packed.targets), model.config.vocab_size)
    assert float(ours) == pytest.approx(reference, rel=1e-4)

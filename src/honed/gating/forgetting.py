"""The forgetting check's measurement: how well a model still predicts good answers to general prompts.

honed ships `resources/general_check.jsonl`: 40 everyday prompts (why, how, compare, sequence, reply, write,
explain) with a reference answer each, written for honed and kept apart from `general_replay.jsonl`, which
training mixes in — a check set the model was trained on would measure nothing.

The measurement is the mean per-token negative log-likelihood of the reference answers (end-of-turn token
included, so "stops where it should" counts too), each after its prompt rendered with the model's own chat
template. On a 135M model that is cheap (one forward pass per prompt) and stable (no sampling, no judge), and a
fine-tune that wrecked general language shows as a rise against the base.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

from honed.errors import DataError
from honed.jsonl import json_object
from honed.types import Message

CHECK_FILE = "resources/general_check.jsonl"


@dataclass(frozen=True)
class GeneralPrompt:
    id: str
    prompt: str
    reference: str
    category: str = ""


def load_general_check() -> list[GeneralPrompt]:
    """honed's general-prompt check set."""
    text = resources.files("honed").joinpath(CHECK_FILE).read_text(encoding="utf-8")
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        obj = json_object(line, f"honed/{CHECK_FILE}:{n}", 'each line must be an object with "prompt" and '
                          '"reference"')
        if not all(isinstance(obj.get(k), str) and obj[k].strip() for k in ("prompt", "reference")):
            raise DataError(f"honed/{CHECK_FILE}:{n}: \"prompt\" and \"reference\" must be non-empty strings")
        out.append(GeneralPrompt(str(obj.get("id", n)), obj["prompt"], obj["reference"], str(obj.get("category",
                                                                                                       ""))))
    return out


def reference_nll(backend: Any, prompts: list[GeneralPrompt]) -> dict[str, Any]:
    """Mean per-token NLL (nats) of each reference answer under `backend`'s model (a TransformersBackend).

    Prompt and completion are the model's chat format's turn (`ChatFormat.render_turn`): the prompt as it would
    be served, the reference and its end-of-turn token as tune's general loss encodes it.
    """
    import torch

    fmt = backend.chat_format
    total, count, per_prompt = 0.0, 0, []
    for p in prompts:
        prompt_text, completion = fmt.render_turn((Message("user", p.prompt),), p.reference)
        prompt_ids = fmt.tokenize(prompt_text)
        completion_ids = fmt.encode_text(completion)
        logits = backend.logits(prompt_ids + completion_ids)  # [len, vocab]: row i predicts token i + 1
        logp = torch.log_softmax(logits[len(prompt_ids) - 1: -1], dim=-1)
        nll = -logp.gather(1, torch.tensor(completion_ids).unsqueeze(1)).squeeze(1)
        total += float(nll.sum())
        count += len(completion_ids)
        per_prompt.append(round(float(nll.mean()), 4))
    mean = total / count if count else math.nan
    return {"mean_nll": mean, "n_prompts": len(prompts), "n_tokens": count, "per_prompt": per_prompt}

"""The validation pass run during training: val loss, and the task metric on val items through generation —
the real answer path (same prompt tokens as serving, greedy, parsed and scored like `honed eval`).

Seed 000's lesson: "loss curves lie". The checkpoint is chosen by this metric, never by train loss.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from honed.evaluate.scoring import item_keywords, judge, score
from honed.task.chat import ChatFormat
from honed.task.data import Item
from honed.task.prompt import build_constraint, decide_constrained
from honed.task.spec import Task
from honed.train.dataset import Encoded
from honed.types import Response

INVALID = "<invalid>"  # the label of val outputs that were no answer at all


@dataclass
class ValPass:
    step: int
    metric: float
    loss: float | None
    top_answer: str | None
    top_share: float
    general_loss: float | None
    seconds: float
    predictions: list[Any]

    def collapsed(self, share: float, data_top: float) -> bool:
        """Seed 000's collapse: `share` of the predictions are one *answer* while the data's top answer is under
        half. Outputs that are no answer at all do not count: a model trained on a short prompt answers outside
        the answer space before it has learned it, and stopping it then would stop the learning."""
        return self.top_answer != INVALID and self.top_share >= share and data_top < 0.5


def _batches(seq: list[Any], n: int) -> list[list[Any]]:
    return [seq[i:i + n] for i in range(0, len(seq), n)]


def mean_loss(model: Any, examples: list[Encoded], pad_id: int, batch_size: int = 16) -> float | None:
    """Mean completion-token loss over examples: packed like training (no padding), logits only where a
    completion token is predicted."""
    import torch

    from honed.train.loop import pack

    if not examples:
        return None
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in _batches(examples, batch_size):
            p = pack(batch)
            if not p.targets:
                continue
            logits = model(input_ids=torch.tensor([p.input_ids], device=model.device),
                           position_ids=torch.tensor([p.position_ids], device=model.device),
                           logits_to_keep=torch.tensor(p.loss_positions, device=model.device),
                           use_cache=False).logits[0].float()
            total += float(torch.nn.functional.cross_entropy(
                logits, torch.tensor(p.targets, device=model.device), reduction="sum"))
            count += len(p.targets)
    return total / max(count, 1)


def generate_texts(model: Any, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int, eos_id: int,
                   batch_size: int = 16, choices: list[Any] | None = None,
                   ) -> list[tuple[str, str]]:
    """Greedy answers for prompt token lists, `batch_size` at a time; prompt i constrained to the token paths of
    `choices[i]` when given. Returns (text, finish_reason)."""
    import transformers

    from honed.backends.transformers import decode_batch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    config = transformers.GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos_id,
                                           pad_token_id=pad_id)
    out: list[tuple[str, str]] = []
    model.eval()
    # the adapter merged into the weights while answering (as export merges it), then taken out again: PEFT's
    # per-layer side path was 38% of an extraction val pass's forward time
    merged = hasattr(model, "merge_adapter")
    if merged:
        model.merge_adapter()
    try:
        for start in range(0, len(prompts), batch_size):
            rows = decode_batch(model, prompts[start:start + batch_size], config, pad_id=pad_id, end_ids=[eos_id],
                                choices=choices[start:start + batch_size] if choices else None)
            out.extend((tokenizer.decode(new[:-1] if ended else new, skip_special_tokens=True),
                        "stop" if ended else "length") for new, ended in rows)
    finally:
        if merged:
            model.unmerge_adapter()
    return out


def choice_paths(task: Task, tokenizer: Any, items: list[Item], end_id: int) -> list[Any] | None:
    """Each item's answer space for the val pass's decoding, where the task decodes constrained (the val metric
    then scores answers as the gate and serve decode them): its choices' token paths (classify, pick) or the
    task's JSON-schema enforcer (extract); None when the task decodes free."""
    if not decide_constrained(task):
        return None
    if task.kind == "extract":
        from honed.backends.transformers import schema_rule

        return [schema_rule(tokenizer, [end_id], task.schema or {})] * len(items)
    return [tuple(tuple(tokenizer.encode(c, add_special_tokens=False)) for c in build_constraint(task, i.inputs).choices)
            for i in items]


def _label(answer: Any) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer, sort_keys=True)


def run_val_pass(step: int, model: Any, tokenizer: Any, task: Task, tpl: ChatFormat, items: list[Item],
                 prompts: list[list[int]], val_encoded: list[Encoded], general: list[Encoded],
                 metric_name: str) -> ValPass:
    """One validation pass: loss, the task metric by generation, the prediction mix, the general-prompt loss."""
    t0 = time.perf_counter()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tpl.eos_token_id
    loss = mean_loss(model, val_encoded, pad_id)
    general_loss = mean_loss(model, general, pad_id)
    # a correct answer is as long as an expected one: longer outputs are wrong however they end, so the pass does
    # not wait for them (early in training they run to max_tokens, and the pass is most of the step budget)
    longest = max((e.n_completion for e in val_encoded), default=task.max_tokens)
    texts = generate_texts(model, tokenizer, prompts, min(task.max_tokens, longest + 8), tpl.eos_token_id,
                           choices=choice_paths(task, tokenizer, items, tpl.eos_token_id))
    records = [judge(task, item, 0, Response(text=text, finish_reason=finish))  # type: ignore[arg-type]
               for item, (text, finish) in zip(items, texts)]
    scored = score(task, records, [item_keywords(task, i.inputs) for i in items], n_resamples=10)
    value = scored["metrics"].get(metric_name)
    answers = [_label(r.answer) if r.cause in (None, "wrong_answer") else INVALID for r in records]
    top, top_n = Counter(answers).most_common(1)[0] if answers else (None, 0)
    model.train()
    return ValPass(step=step, metric=float(value or 0.0), loss=loss, top_answer=top,
                   top_share=top_n / max(len(answers), 1), general_loss=general_loss,
                   seconds=time.perf_counter() - t0, predictions=[r.answer for r in records])


def expected_top_share(task: Task, items: list[Item]) -> float:
    """Share of the most common expected answer: a collapse is only a collapse when the data is not."""
    counts = Counter(_label(i.expected) for i in items)
    return max(counts.values()) / max(len(items), 1) if counts else 1.0

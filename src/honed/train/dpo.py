"""`tune_dpo(task, config)`: Direct Preference Optimization on pairs built from the task itself (seed 000).

Seed 000's SFT taught a 3B model to say NONE to everything; its proposed fix is DPO, "which teaches the model to
prefer correct picks over NONE without overwriting its base capabilities". The pairs come from the model's own
behaviour: each train item is answered greedily by the base, and

- a wrong or invalid answer becomes the *rejected* side, the expected answer the *chosen* one (on-policy);
- a correct answer gets a hard negative instead (`dpo_hard_negatives`): for a real label, NONE (a false NONE, the
  seed's failure); for NONE, another answer (a false pick). Kinds without a closed answer space keep only
  the model's own mistakes.

Both sides are rendered exactly like SFT completions (the serving template, the turn terminator included), and
the token ids are built by honed — TRL's own tokenization is bypassed, so the train/serve identity holds by
construction. The guardrails are SFT's: val metric every N steps, best adapter by it, collapse alarm.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from honed.errors import MissingDependency, UserError
from honed.store import Store, write_json_atomic
from honed.task.chat import ChatFormat
from honed.task.data import Item
from honed.task.prompt import build_constraint
from honed.task.spec import Task
from honed.train.config import TuneConfig
from honed.train.dataset import middle_truncate, render_completion
from honed.train.session import base_pass, finish, guardrails, prepare, train_with_guardrails
from honed.train.summary import TuneSummary
from honed.types import Response


@dataclass(frozen=True)
class Pair:
    id: str
    prompt: str
    chosen: str
    rejected: str
    source: str
    """model_wrong | model_invalid | hard_false_none | hard_false_pick"""


def _other_answers(task: Task, item: Item) -> list[str]:
    if task.kind not in ("classify", "pick"):
        return []
    choices = list(build_constraint(task, item.inputs).choices or ())
    return [c for c in choices if c != str(item.expected)]


def build_pairs(task: Task, items: list[Item], answers: list[tuple[str, str]], tpl: ChatFormat, *,
                hard_negatives: bool = True, seed: int = 0) -> list[Pair]:
    """Preference pairs from the model's greedy answers `(text, finish_reason)` to `items` (pure)."""
    from honed.evaluate.scoring import judge

    none = task.none_label
    rng = random.Random(seed)
    pairs = []
    for item, (text, reason) in zip(items, answers, strict=True):
        prompt, chosen = render_completion(task, item.inputs, item.expected, tpl)
        rec = judge(task, item, 0, Response(text=text, finish_reason=reason))  # type: ignore[arg-type]
        if not rec.correct:
            if rec.cause == "wrong_answer" and rec.answer is not None:
                _, rejected = render_completion(task, item.inputs, rec.answer, tpl)
                source = "model_wrong"
            else:  # prose, cut at max_tokens, invalid JSON: reject what the model really wrote
                rejected, source = text + tpl.eos_token, "model_invalid"
            if rejected != chosen:
                pairs.append(Pair(item.id, prompt, chosen, rejected, source))
            continue
        others = _other_answers(task, item) if hard_negatives else []
        if not others:
            continue
        if none is not None and none in others:
            wrong, source = none, "hard_false_none"
        else:
            wrong, source = rng.choice(others), "hard_false_pick"
        _, rejected = render_completion(task, item.inputs, wrong, tpl)
        pairs.append(Pair(item.id, prompt, chosen, rejected, source))
    return pairs


def encode_pairs(pairs: list[Pair], fmt: ChatFormat, max_length: int) -> tuple[list[dict[str, list[int]]], list[str]]:
    """Token ids per pair; a pair whose longer side does not fit is skipped (never cut), a long prompt loses
    its middle like in SFT."""
    rows, skipped = [], []
    for p in pairs:
        p_ids = fmt.tokenize(p.prompt)
        c_ids = fmt.encode_text(p.chosen)
        r_ids = fmt.encode_text(p.rejected)
        longest = max(len(c_ids), len(r_ids))
        if longest >= max_length - 8:
            skipped.append(p.id)
            continue
        rows.append({"prompt_ids": middle_truncate(p_ids, max_length - longest), "chosen_ids": c_ids,
                     "rejected_ids": r_ids})
    return rows, skipped


def tune_dpo(task: Task, config: TuneConfig, *, store: Store | None = None) -> TuneSummary:
    """DPO with a LoRA adapter (the reference is the same model with the adapter disabled)."""
    try:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer
    except ImportError:
        raise MissingDependency("trl", extra="train", why="DPO") from None
    from honed.train.validate import generate_texts

    s = prepare(task, config, store)
    prompts = [s.tpl.tokenize(render_completion(task, i.inputs, i.expected, s.tpl)[0]) for i in s.train_items]
    # the adapter starts at B = 0, so these are the base model's own answers
    answers = generate_texts(s.model, s.tokenizer, prompts, task.max_tokens, s.tpl.eos_token_id)
    pairs = build_pairs(task, s.train_items, answers, s.tpl, hard_negatives=config.dpo_hard_negatives,
                        seed=config.seed)
    rows, skipped = encode_pairs(pairs, s.tpl, s.settings["max_length"])
    if not rows:
        raise UserError(f"{task.source}: no preference pair could be built from {len(s.train_items)} train items "
                        "(the model answers them all correctly and the task has no closed answer space for hard "
                        "negatives); DPO has nothing to learn, use SFT or more data")
    sources: dict[str, int] = {}
    for p in pairs:
        sources[p.source] = sources.get(p.source, 0) + 1
    s.manifest["dpo"] = {"pairs": len(rows), "skipped_too_long": skipped, "by_source": sources,
                         "beta": config.dpo_beta, "hard_negatives": config.dpo_hard_negatives,
                         "base_train_accuracy": round(1 - (sources.get("model_wrong", 0) +
                                                           sources.get("model_invalid", 0)) / len(s.train_items), 4)}
    s.write_manifest()
    write_json_atomic(s.run_dir / "pairs.json", [p.__dict__ for p in pairs])

    steps_per_epoch = math.ceil(len(rows) / (config.batch_size * config.grad_accum))
    eval_every = config.eval_every or max(1, steps_per_epoch // 4)
    args = DPOConfig(
        output_dir=str(s.run_dir / "trainer"), per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=s.settings["learning_rate"],
        num_train_epochs=s.settings["epochs"], max_steps=config.max_steps or -1,
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay,
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to=config.report_to or "none",
        seed=config.seed, data_seed=config.seed, beta=config.dpo_beta, max_length=None, bf16=s.cuda,
        use_cpu=not s.cuda, gradient_checkpointing=config.gradient_checkpointing, dataloader_num_workers=0,
        disable_tqdm=False,
    )

    class _Pretokenized(DPOTrainer):
        """honed already built the ids with the serving template; TRL must not re-tokenize them."""

        def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            return dataset

    base_pass(s)
    trainer = _Pretokenized(model=s.model, ref_model=None, args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=s.tokenizer, callbacks=[guardrails(s, eval_every)])
    status, out, train_s = train_with_guardrails(s, trainer)
    per_epoch = sum(len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows)
    return finish(s, trainer.state.global_step, out.training_loss if out else None, status, train_s,
                  per_epoch * (trainer.state.epoch or 0))


__all__ = ["Pair", "build_pairs", "encode_pairs", "tune_dpo"]

"""`tune(task, config)`: LoRA / QLoRA supervised fine-tuning with TRL + PEFT, and honed's guardrails.

One flat recipe, top to bottom: prepare (load → render with the serving template → check train/serve identity →
encode, completion-only, never cut a completion → run folder) → mix replay → train with a validation pass every
N steps → keep the best checkpoint by the task metric → curves, manifest, registry. `method="dpo"` hands over to
`honed.train.dpo`.
"""

from __future__ import annotations

import math
from typing import Any

from honed.errors import MissingDependency
from honed.store import Store
from honed.task.spec import Task
from honed.train.config import TuneConfig
from honed.train.session import (
    Collapse,
    base_pass,
    finish,
    guardrails,
    prepare,
    replay_rows,
    train_with_guardrails,
)


def sft_args(config: TuneConfig, settings: dict[str, Any], output_dir: str, cuda: bool) -> Any:
    """TRL's SFTConfig for honed's rows: completion-only loss on pre-tokenized input_ids + completion_mask,
    padding-free batches, no TRL truncation (honed already fitted every example), no Trainer checkpoints (the
    guardrail callback saves the best adapter by the val metric)."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=output_dir, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=settings["learning_rate"],
        num_train_epochs=settings["epochs"], max_steps=config.max_steps or -1, lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay, logging_steps=1, save_strategy="no",
        eval_strategy="no", report_to=config.report_to or "none", seed=config.seed, data_seed=config.seed,
        completion_only_loss=True, padding_free=config.packing, max_length=None, bf16=cuda, use_cpu=not cuda,
        neftune_noise_alpha=config.neftune_alpha, gradient_checkpointing=config.gradient_checkpointing,
        dataloader_num_workers=0, remove_unused_columns=True, disable_tqdm=False,
    )


def tune(task: Task, config: TuneConfig, *, store: Store | None = None) -> dict[str, Any]:
    """Fine-tune `config.model` on the task's train split; returns the run summary (also in the run folder)."""
    if config.method == "dpo":
        from honed.train.dpo import tune_dpo

        return tune_dpo(task, config, store=store)
    try:
        from datasets import Dataset
        from trl import SFTTrainer
    except ImportError:
        raise MissingDependency("trl", extra="train", why="fine-tuning") from None

    s = prepare(task, config, store)
    replay = replay_rows(s)
    s.manifest["data"]["n_replay"] = len(replay)
    s.write_manifest()
    train_rows = [{"input_ids": e.input_ids, "completion_mask": e.completion_mask} for e in s.train_enc + replay]
    steps_per_epoch = math.ceil(len(train_rows) / (config.batch_size * config.grad_accum))
    eval_every = config.eval_every or max(1, steps_per_epoch // 4)

    base_pass(s)
    trainer = SFTTrainer(model=s.model, args=sft_args(config, s.settings, str(s.run_dir / "trainer"), s.cuda),
                         train_dataset=Dataset.from_list(train_rows), processing_class=s.tokenizer,
                         callbacks=[guardrails(s, eval_every)])
    status, out, train_s = train_with_guardrails(s, trainer)
    n_tokens = sum(len(r["input_ids"]) for r in train_rows) * (trainer.state.epoch or 0)
    return finish(s, trainer, out, status, train_s, n_tokens)


__all__ = ["Collapse", "sft_args", "tune"]

"""`tune(task, config)`: LoRA / QLoRA supervised fine-tuning with PEFT, and honed's guardrails.

One flat recipe, top to bottom: prepare (load → render with the serving template → check train/serve identity →
encode, completion-only, never cut a completion → run folder) → mix replay → train (`honed.train.loop`: packed
batches, logits only at completion positions, steps sized to a time budget) with a validation pass every N steps
→ keep the best checkpoint by the task metric → curves, manifest, registry. `method="dpo"` hands over to
`honed.train.dpo` (TRL's DPOTrainer).
"""

from __future__ import annotations

import math
import time
from typing import Any

from honed.errors import MissingDependency
from honed.store import Store
from honed.task.spec import Task
from honed.train.config import TuneConfig
from honed.train.session import (
    Collapse,
    Session,
    after_step,
    base_pass,
    finish,
    log_train,
    prepare,
    replay_rows,
)
from honed.train.summary import TuneSummary


def tune(task: Task, config: TuneConfig, *, store: Store | None = None) -> TuneSummary:
    """Fine-tune `config.model` on the task's train split; returns the run summary (also in the run folder)."""
    if config.method == "dpo":
        from honed.train.dpo import tune_dpo

        return tune_dpo(task, config, store=store)
    try:
        import peft  # noqa: F401
    except ImportError:
        raise MissingDependency("peft", extra="train", why="fine-tuning") from None
    from honed.train.loop import Plan

    s = prepare(task, config, store)
    replay = replay_rows(s)
    s.manifest["data"]["n_replay"] = len(replay)
    s.write_manifest()
    rows = s.train_enc + replay
    steps_per_epoch = math.ceil(len(rows) / (config.batch_size * config.grad_accum))
    # ~3 validation passes per epoch: a pass costs 3-4 steps of compute on a CPU, so 4 per epoch spent ~40% of a
    # time budget on watching instead of learning (measured on the demo task)
    # with a time budget and no eval_every asked for, the plan spaces them by their measured cost (at least this)
    eval_every = config.eval_every or max(1, steps_per_epoch // 3)
    total = config.max_steps or max(1, math.ceil(s.settings["epochs"] * steps_per_epoch))

    t_start = time.perf_counter()
    base_pass(s)
    plan = Plan(total=total, warmup_ratio=config.warmup_ratio,
                budget_s=(config.time_budget - (time.perf_counter() - t_start)) if config.time_budget else None,
                eval_every=eval_every, auto_eval=config.eval_every is None)
    s.plan = plan  # each validation pass now also writes last/, the checkpoint `honed tune --resume` reads
    s.state["loop"] = {"steps_per_epoch": steps_per_epoch, "eval_every": eval_every, "planned_steps": total,
                       "time_budget_s": config.time_budget}
    res = run_loop(s, rows, plan)
    s.manifest["plan"] = {**s.state["loop"], "steps": plan.total, "notes": res.plan_notes}
    s.write_manifest()
    return finish(s, res.steps, res.train_loss, res.status, res.seconds, res.tokens,
                  extra={"plan": s.manifest["plan"], "wall_seconds": round(time.perf_counter() - t_start, 1),
                         "step_tokens_per_s": round(res.tokens / res.step_seconds, 1) if res.step_seconds else None})


def run_loop(s: Session, rows: list[Any], plan: Any, start: int = 0) -> Any:
    """honed's loop on `rows` with the session's guardrails; `start`: the steps a resumed run already took (its
    validation passes and curve points keep their step numbers, its data order is reshuffled from seed + start)."""
    from honed.train.loop import train_loop

    config = s.config

    def every() -> int:  # the plan may respace the passes as it measures them; a checkpoint keeps the spacing
        s.state["loop"]["eval_every"] = plan.eval_every
        return plan.eval_every
    return train_loop(
        s.model, rows, batch_size=config.batch_size, grad_accum=config.grad_accum,
        learning_rate=s.settings["learning_rate"], weight_decay=config.weight_decay, schedule=config.lr_scheduler,
        plan=plan, seed=config.seed + start, neftune_alpha=config.neftune_alpha,
        after_step=lambda step, last: after_step(s, start + step, last, every()),
        on_loss=lambda step, loss, lr, epoch: log_train(s, start + step, loss, lr, epoch),
        val_seconds=lambda: s.curves["val"][-1]["seconds"])


__all__ = ["Collapse", "run_loop", "tune"]

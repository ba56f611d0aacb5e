"""honed's SFT training loop over a PEFT model: packed batches, logits only where the loss is taken, a schedule
sized to a time budget.

Why a loop of our own and not TRL's SFTTrainer (measured side by side in `bench/tune_throughput.py`): on a CPU
the step time is the product, and the trainer spends it where no loss is taken. The loss of a classification
example is 2–4 completion tokens out of 60–200; TRL applies the LM head (49k × 576 on SmolLM2, a fifth of the
model's forward FLOPs per token) at every position, then computes entropy and token accuracy over the full
vocabulary at every step. Here the model's own `logits_to_keep` takes the indices of the positions that predict
a completion token, so the head runs only there; everything else is plain PyTorch + PEFT (AdamW, gradient
clipping at 1.0, warmup then linear/cosine decay: the Trainer's defaults). DPO still trains through TRL.

A batch is `batch_size` examples concatenated into one row (no padding), with position ids restarting at each
example: transformers turns reset position ids into a block-diagonal causal mask, so examples never attend to
each other (tests/integration/test_padding_free.py checks it on this path).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from honed.errors import UserError
from honed.train.dataset import Encoded
from honed.train.distributed import agree, check_world, guarded_step

SCHEDULES = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass
class Packed:
    """One optimizer micro-batch: examples concatenated, and the positions whose logits the loss needs."""

    input_ids: list[int]
    position_ids: list[int]
    loss_positions: list[int]
    """Index t where the token at t + 1 is a completion token (the logit at t predicts it)."""
    targets: list[int]

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


def pack(rows: list[Encoded]) -> Packed:
    ids: list[int] = []
    pos: list[int] = []
    where: list[int] = []
    targets: list[int] = []
    for e in rows:
        offset = len(ids)
        ids += e.input_ids
        pos += range(len(e.input_ids))
        for j in range(1, len(e.input_ids)):
            if e.completion_mask[j]:
                where.append(offset + j - 1)
                targets.append(e.input_ids[j])
    return Packed(ids, pos, where, targets)


def lr_factor(schedule: str, step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based) of `total`."""
    if schedule not in SCHEDULES:
        raise UserError(f"lr_scheduler {schedule!r}: honed's loop knows {', '.join(SCHEDULES)}")
    if step < warmup and schedule != "constant":
        return (step + 1) / (warmup + 1)
    if schedule.startswith("constant"):
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - progress


@dataclass
class Plan:
    """How many optimizer steps the run takes; with a time budget it is fixed after the first timed steps."""

    total: int
    warmup_ratio: float
    budget_s: float | None = None
    cap: int | None = None
    """The epochs / max_steps bound, which a time budget never exceeds (set from `total` on the first fit)."""
    measured_after: int = 3
    fixed: bool = False
    step_s: float | None = None
    notes: list[str] = field(default_factory=list)
    eval_every: int = 1
    """Steps between validation passes; with a time budget and `auto_eval`, set by `fit_budget`."""
    auto_eval: bool = False
    """Space the validation passes by their measured cost (no eval_every was asked for): `eval_every` is then the
    closest spacing allowed."""
    val_share: float = 0.25
    """With `auto_eval`, the share of the budget validation passes may take while the steps are still short of
    their cap."""
    min_every: int = 0
    """The closest spacing `auto_eval` may choose: the `eval_every` the plan was made with."""

    def __post_init__(self) -> None:
        self.min_every = self.min_every or self.eval_every

    @property
    def warmup(self) -> int:
        return math.ceil(self.warmup_ratio * self.total)

    @property
    def run_total(self) -> int:
        """The planned steps counted from the run's first step (a resumed plan's `total` counts from its start)."""
        return self.total

    def fit_budget(self, done: int, elapsed: float, step_s: float, val_s: float) -> None:
        """Set `total` so that the remaining steps and their validation passes end within the budget, and with
        `auto_eval` the spacing of the passes: at most `val_share` of what is left goes to them unless the steps
        reach their cap first (then the rest of the budget buys more passes, down to `eval_every` apart). An
        extraction pass costs ~20 steps (92 s vs 5 s): one every 4 steps spent 85% of a 20-minute budget on
        watching, 27 steps of learning."""
        assert self.budget_s is not None
        self.cap = self.cap or self.total
        left = self.budget_s - elapsed - val_s  # keep one pass for the last step
        if self.auto_eval and val_s > 0:
            n_val = max(1, int(self.val_share * left / val_s))
            more = int((left - n_val * val_s) / step_s)
            total = max(done, min(self.cap, done + max(more, 0)))
            n_val = max(n_val, int((left - (total - done) * step_s) / val_s))
            every = max(self.min_every, math.ceil((total - done) / n_val))
        else:
            every = self.eval_every
            more = int(left / (step_s + val_s / max(every, 1)))
            total = max(done, min(self.cap, done + max(more, 0)))
        if total != self.total or every != self.eval_every or not self.fixed:
            self.notes.append(f"at step {done}: {step_s:.2f} s/step and {val_s:.1f} s per validation pass measured, "
                              f"{elapsed:.0f} of {self.budget_s:.0f} s spent → {total} steps (cap {self.cap}), "
                              f"a validation pass every {every}")
        self.total, self.fixed, self.step_s, self.eval_every = total, True, step_s, every


@dataclass
class LoopResult:
    status: str
    steps: int
    train_loss: float | None
    seconds: float
    tokens: int
    """Real tokens of the examples trained on (every token of every example seen, no padding exists)."""
    step_seconds: float
    """Time in optimizer steps alone (validation passes excluded): tokens / step_seconds is the loop's speed."""
    plan_notes: list[str]


def train_loop(model: Any, rows: list[Encoded], *, batch_size: int, grad_accum: int, learning_rate: float,
               weight_decay: float, schedule: str, plan: Plan, seed: int, neftune_alpha: float | None,
               after_step: Callable[[int, bool], bool], on_loss: Callable[[int, float, float, float], None],
               val_seconds: Callable[[], float]) -> LoopResult:
    """Train `model` (a PEFT model) on `rows`. `after_step(step, last)` runs the guardrails and returns True to
    stop; `on_loss(step, loss, lr, epoch)` records the curve; `val_seconds()` is the latest validation pass's
    duration (for the time budget)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    hook = _neftune(model, neftune_alpha) if neftune_alpha else None
    accelerator, rank = None, 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # `accelerate launch`: DDP/FSDP wraps the model, each rank draws its own batches, gradients are averaged
        from accelerate import Accelerator

        accelerator = Accelerator()
        check_world(accelerator)
        model, opt = accelerator.prepare(model, opt)
        rank = accelerator.process_index
    device = accelerator.device if accelerator else next(model.parameters()).device
    rng = random.Random(seed + rank)
    order: list[int] = []
    epoch_len = math.ceil(len(rows) / batch_size)
    micro = 0
    step = 0
    losses: list[float] = []
    tokens = 0
    status = "complete"
    t0 = time.perf_counter()
    timed: list[float] = []
    fitted_val: float | None = None
    model.train()
    try:
        while step < plan.total:
            t_step = time.perf_counter()
            step_loss = 0.0
            for _ in range(grad_accum):
                if not order:
                    order = list(range(len(rows)))
                    rng.shuffle(order)
                batch = [rows[i] for i in order[:batch_size]]
                del order[:batch_size]
                micro += 1
                p = pack(batch)
                tokens += p.n_tokens
                ids = torch.tensor([p.input_ids], device=device)
                pos = torch.tensor([p.position_ids], device=device)
                keep = torch.tensor(p.loss_positions, device=device)
                out = model(input_ids=ids, position_ids=pos, logits_to_keep=keep, use_cache=False)
                logits = out.logits[0].float()
                loss = torch.nn.functional.cross_entropy(logits, torch.tensor(p.targets, device=device))
                if accelerator is not None:
                    accelerator.backward(loss / grad_accum)
                else:
                    (loss / grad_accum).backward()
                step_loss += float(loss.detach()) / grad_accum
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            lr = learning_rate * lr_factor(schedule, step, plan.warmup, plan.total)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            losses.append(step_loss)
            on_loss(step, step_loss, lr, micro * batch_size / max(len(rows), 1) if epoch_len else 0.0)
            timed.append(time.perf_counter() - t_step)
            val_s = val_seconds()
            if plan.budget_s is not None and step >= plan.measured_after and (not plan.fixed or val_s != fitted_val):
                # the first step pays for allocations: the median of the timed steps is the step time; refit after
                # each validation pass (its cost changes as answers get shorter, and so does a shared machine)
                plan.fit_budget(step, time.perf_counter() - t0, sorted(timed)[len(timed) // 2], val_s)
                fitted_val = val_s
            over = plan.budget_s is not None and time.perf_counter() - t0 + val_s > plan.budget_s * 1.1
            if accelerator is not None:  # rank 0's plan and clock decide for every rank (honed.train.distributed)
                plan.total, plan.eval_every, spent = agree(accelerator, plan.total, plan.eval_every, int(over))
                over = bool(spent)
            last = step >= plan.total or over
            if guarded_step(accelerator, model, after_step, step, last, plan.eval_every):
                break
            if over:
                plan.notes.append(f"stopped at step {step}: the time budget ran out before the planned "
                                  f"{plan.total} steps (steps slowed down)")
                break
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        if hook is not None:
            hook.remove()
    return LoopResult(status, step, sum(losses) / len(losses) if losses else None, time.perf_counter() - t0,
                      tokens, sum(timed), plan.notes)


def _neftune(model: Any, alpha: float) -> Any:
    """NEFTune: uniform noise on the input embeddings while training, scaled by alpha / sqrt(length × dim)."""
    import torch

    def add_noise(module: Any, args: Any, output: Any) -> Any:
        if not module.training:
            return output
        scale = alpha / math.sqrt(output.size(-2) * output.size(-1))
        return output + torch.zeros_like(output).uniform_(-scale, scale)

    return model.get_input_embeddings().register_forward_hook(add_noise)

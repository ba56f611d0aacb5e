"""`honed tune --resume RUN`: continue a tune run that was killed (or Ctrl-C'd) from its last checkpoint.

At every validation pass honed's loop writes `RUN/last/` atomically (`save_checkpoint`): the adapter, the torch
RNG state and `checkpoint.json` — the step, the loop's plan (total steps, warmup), the curves and the guardrail
state (best pass, patience, alarms). `resume_tune` reloads the run's own `config.json` and task, re-prepares
(refusing when the data, base model or settings changed), restores the adapter, the curves and the state, and
trains the remaining steps of the same plan, appending to the same curves; `finish` then marks the run.

What a resumed run does not restore, and why: the AdamW moments and the loop's data order live inside
`honed.train.loop.train_loop`, which takes neither (see the README's Reliability notes). The optimizer restarts
from zero moments; the learning-rate schedule continues exactly where it was after warmup (the plan below is the
original one shifted by the steps done); the remaining steps draw their batches from a shuffle seeded with
seed + step. So a resumed run is a faithful continuation of the model and the schedule, not a bit-identical
replay of the run that was killed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from honed.errors import UserError
from honed.store import Store, write_json_atomic
from honed.train.loop import Plan
from honed.train.status import FINISHED, pid_alive, read_status
from honed.train.summary import TuneSummary
from honed.train.validate import ValPass

LAST = "last"
CHECKPOINT = "checkpoint.json"
RNG = "torch_rng.pt"


@dataclass
class ResumedPlan(Plan):
    """The original plan with its first `start` steps done: the loop counts from 0 again, so the warmup moves
    back by `start` (negative once warmup is over) and lr_factor(step, warmup, total) matches the original at
    every step after warmup."""

    start: int = 0
    full_warmup: int = 0

    @property
    def warmup(self) -> int:  # type: ignore[override]
        return self.full_warmup - self.start

    @property
    def run_total(self) -> int:
        return self.start + self.total


def _state_doc(state: dict[str, Any]) -> dict[str, Any]:
    return {k: asdict(v) if isinstance(v, ValPass) else v for k, v in state.items()}


def save_checkpoint(s: Any, step: int) -> None:
    """`RUN/last/` for session `s` after the validation pass at `step`, renamed into place whole."""
    import torch

    from honed.train.session import save_adapter

    plan = s.plan
    doc = {"step": step, "plan": {"total": plan.run_total,
                                  "warmup": getattr(plan, "full_warmup", plan.warmup), "notes": list(plan.notes)},
           "curves": s.curves, "state": _state_doc(s.state)}

    def extra(folder: Path) -> None:
        torch.save(torch.get_rng_state(), folder / RNG)
        write_json_atomic(folder / CHECKPOINT, doc)

    save_adapter(s.model, s.run_dir / LAST, extra)


def read_checkpoint(run: Path) -> dict[str, Any]:
    from honed.data.reader import read_json_file

    path = run / LAST / CHECKPOINT
    if not path.is_file():
        raise UserError(f"{run}: no checkpoint in {LAST}/ (the run stopped before its first validation pass, or it "
                        "trained through TRL, as DPO does, which writes none); start it again with `honed tune`")
    doc = read_json_file(path, "expected the checkpoint `honed tune` writes")
    if not isinstance(doc, dict) or not {"step", "plan", "curves", "state"} <= set(doc):
        raise UserError(f"{path}: not a tune checkpoint (expected step, plan, curves, state); start a new run")
    return doc


def _restore(s: Any, ck: dict[str, Any]) -> None:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from honed.train.session import save_adapter

    last = s.run_dir / LAST
    weights = load_file(str(last / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(s.model, weights)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise UserError(f"{last}: the checkpoint's adapter does not fit this model ({len(unexpected)} unknown "
                        f"tensors, e.g. {unexpected[0]}); start a new run")
    if (last / RNG).is_file():
        torch.set_rng_state(torch.load(last / RNG))
    s.curves = ck["curves"]
    s.state = {k: ValPass(**v) if k in ("best", "base") and isinstance(v, dict) else v
               for k, v in ck["state"].items()}
    best = s.state.get("best")
    if best is not None and best.step == ck["step"]:
        save_adapter(s.model, s.best_dir)  # killed between last/ and best/: the best is the checkpoint itself


def resume_tune(run: Path, *, store: Store | None = None) -> TuneSummary:
    """Continue the tune run in folder `run` from `run/last/`; returns the run summary, as `tune` does."""
    from honed.task.spec import load_task
    from honed.train.config import TuneConfig
    from honed.train.session import finish, prepare, replay_rows
    from honed.train.sft import run_loop

    run = Path(run)
    status = read_status(run)
    if status is None:
        raise UserError(f"{run}: no status.json, so not a run `honed tune --resume` can continue (a run from an "
                        "older honed, or not a tune run)")
    if status["status"] in FINISHED and status["status"] != "interrupted":
        raise UserError(f"{run}: the run already finished ({status['status']}); nothing to resume: gate it with "
                        f"`honed gate {run}`")
    if status["status"] == "running" and pid_alive(status.get("pid")):
        raise UserError(f"{run}: the run is still running (pid {status.get('pid')}); resume only a run whose process "
                        "is gone")
    ck = read_checkpoint(run)
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config = TuneConfig.model_validate({k: v for k, v in saved.items() if k in TuneConfig.model_fields})
    if config.method == "dpo":
        raise UserError(f"{run}: a DPO run trains through TRL and cannot be resumed; start it again")
    task = load_task(Path(manifest["task_dir"]))
    s = prepare(task, config, store, resume=run)
    _restore(s, ck)
    start, total = int(ck["step"]), int(ck["plan"]["total"])
    s.manifest.setdefault("resumed", []).append({"from_step": start, "of": total,
                                                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    s.manifest["data"]["n_replay"] = len(replay := replay_rows(s))
    s.write_manifest()
    loop = s.state["loop"]
    plan = ResumedPlan(total=total - start, warmup_ratio=0.0, start=start, full_warmup=int(ck["plan"]["warmup"]),
                       fixed=True, notes=[*ck["plan"]["notes"], f"resumed at step {start} of {total}"],
                       eval_every=int(loop["eval_every"]))
    s.plan = plan
    t0 = time.perf_counter()
    if s.state.get("stopped") or start >= total:  # killed after the last pass, before finish(): only finish
        steps, loss, status_now, seconds, tokens, notes = start, None, "complete", 0.0, 0, plan.notes
    else:
        res = run_loop(s, s.train_enc + replay, plan, start=start)
        steps, loss, status_now, seconds, tokens, notes = (start + res.steps, res.train_loss, res.status,
                                                           res.seconds, res.tokens, res.plan_notes)
    s.manifest["plan"] = {**loop, "steps": total, "notes": notes}
    s.write_manifest()
    return finish(s, steps, loss, status_now, seconds, tokens,
                  extra={"plan": s.manifest["plan"], "resumed_from_step": start, "task_dir": str(task.root),
                         "model": config.model,
                         "wall_seconds": round(time.perf_counter() - t0, 1)})

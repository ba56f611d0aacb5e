"""What every training recipe (SFT, DPO) shares: loading the base for training, the train/serve template check,
planned settings, the run folder and manifest, the guardrail callback and the end-of-run summary.

The recipes themselves (`sft.tune`, `dpo.tune_dpo`) stay flat: prepare → their own rows and trainer → finish.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed import __version__
from honed.errors import MissingDependency, UserError
from honed.store import Store, canonical_json, write_json_atomic
from honed.task.chat import ChatFormat, from_tokenizer, open_gguf
from honed.task.data import Item, items_hash, load_items
from honed.task.spec import Task
from honed.train.config import TuneConfig
from honed.train.dataset import Encoded, EncodeReport, encode, render_prompt
from honed.train.distributed import is_main_process
from honed.train.status import write_status
from honed.train.summary import TuneSummary, write_summary
from honed.train.validate import ValPass, expected_top_share, run_val_pass

log = logging.getLogger("honed")


FORGETTING_PROBE = 16
"""General prompts whose loss every validation pass measures for the forgetting alarm (the first of the 40 kept
out of replay). A pass is 3-4 training steps of compute on 2 CPU cores, and 40 prompts were a third of it; 16
show the trend, and the gate's forgetting check measures 40 prompts of its own."""


class Collapse(UserError):
    """Validation predictions collapsed onto one answer (seed 000's "NONE to everything")."""


def serving_check(task: Task, model: str, item: Item, tpl: ChatFormat) -> None:
    """Render and tokenize one prompt the way the served GGUF will (llama.cpp, its own template and vocab) and
    refuse to train if the training prefix differs. Skipped for HF folders (no GGUF to serve yet) and where
    llama.cpp is not installed (a GPU box training for export elsewhere)."""
    from honed.backends.models import resolve_gguf
    from honed.train.dataset import check_serving_identity

    try:
        gguf = resolve_gguf(model)
    except UserError:
        return
    try:
        with open_gguf(gguf) as served:
            prompt = render_prompt(task, item.inputs, served)
            tokens = served.tokenize(prompt)
    except MissingDependency:
        log.warning("llama-cpp-python is not installed: the train/serve tokenization check is skipped")
        return
    check_serving_identity(task, item, tpl, tokens, prompt)


def general_examples(path: str | None, limit: int = 400) -> list[dict]:
    """General instruction pairs (honed's own set, or the user's), for replay and the forgetting check."""
    from honed.data.replay import load_replay

    return [{"prompt": r.prompt, "response": r.response} for r in load_replay(Path(path) if path else None)][:limit]


def encode_general(pairs: list[dict], tpl: ChatFormat, max_length: int) -> list[Encoded]:
    """General instruction pairs as one-turn conversations, rendered and ended as the task's own examples."""
    from honed.types import Message

    out = []
    for i, p in enumerate(pairs):
        prompt, completion = tpl.render_turn((Message("user", p["prompt"]),), p["response"])
        p_ids = tpl.tokenize(prompt)
        c_ids = tpl.encode_text(completion)
        if len(p_ids) + len(c_ids) <= max_length:
            out.append(Encoded(f"general-{i}", p_ids + c_ids, [0] * len(p_ids) + [1] * len(c_ids), len(p_ids),
                               len(c_ids)))
    return out


@dataclass
class Session:
    """One training run in progress: the model being tuned, its data, its run folder and its guardrail state."""

    task: Task
    config: TuneConfig
    cuda: bool
    loaded: Any
    tokenizer: Any
    model: Any
    tpl: ChatFormat
    settings: dict[str, Any]
    train_items: list[Item]
    val_items: list[Item]
    train_enc: list[Encoded]
    val_enc: list[Encoded]
    report: EncodeReport
    general: list[Encoded]
    general_probe: list[Encoded]
    warnings: list[str]
    store: Store
    owns_store: bool
    run_id: str
    run_dir: Path
    manifest: dict[str, Any]
    val_sub: list[Item] = field(default_factory=list)
    val_prompts: list[list[int]] = field(default_factory=list)
    curves: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    plan: Any = None
    """honed's loop's `Plan`, where the run trains through it: then each validation pass also writes `last/`, the
    checkpoint `honed tune --resume` continues from (`honed.train.resume`)."""

    @property
    def best_dir(self) -> Path:
        return self.run_dir / "best"

    @property
    def metric(self) -> str:
        return self.task.primary_metric

    @property
    def data_top(self) -> float:
        return expected_top_share(self.task, self.val_sub)

    def write_manifest(self) -> None:
        write_json_atomic(self.run_dir / "manifest.json", self.manifest)


def prepare(task: Task, config: TuneConfig, store: Store | None = None, *, resume: Path | None = None) -> Session:
    """Load the base for training, check train/serve identity, plan the settings, encode the data, open the run
    folder (status.json "running", config.json, manifest.json) and wrap the model in a LoRA adapter.

    `resume`: an existing run folder to continue instead of a new one; refused when its data, base model or
    settings are not what they were (resuming would then continue another training)."""
    try:
        import torch
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise MissingDependency("trl", extra="train", why="fine-tuning") from None
    from honed.train.distributed import device_map
    from honed.train.loading import load_base, prepare_kbit, qlora_config
    from honed.data.augment import swap_entities
    from honed.train.plan_defaults import plan_swaps, resolve_settings

    cuda = torch.cuda.is_available()
    qcfg = qlora_config() if config.method == "qlora" else None  # a UserError naming what this machine lacks
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    base_task = task.with_prompt("base")
    variant = config.prompt if config.prompt != "auto" else ("tuned" if task.has_tuned_prompt else "base")
    task = task.with_prompt(variant)  # a missing tuned_template asked for by name is a TaskError here
    train_items = load_items(task, "train")
    val_items = load_items(task, "val")
    try:
        from honed.data.lock import assert_not_locked

        assert_not_locked(task, train_items + val_items)
    except ImportError:  # the data stage is optional for a bare task folder
        pass
    loaded = load_base(config.model, dtype="bfloat16" if cuda else "float32",
                       device_map=device_map(cuda), quantization_config=qcfg)
    tokenizer, model = loaded.tokenizer, loaded.model
    if qcfg is not None:  # load_base checked that the linears are 4-bit; freeze, upcast norms, checkpointing
        model = prepare_kbit(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tpl = from_tokenizer(tokenizer)
    serving_check(task, config.model, train_items[0], tpl)

    swaps, swaps_reason = plan_swaps(task, config, len(train_items))
    swapped = swap_entities(task, train_items, swaps, seed=config.seed)
    settings, reasons, warnings = resolve_settings(task, config, loaded, train_items, tpl, swapped)
    settings["entity_swaps"], reasons["entity_swaps"] = swaps, swaps_reason
    reasons["prompt"] = prompt_reason(base_task, task, config.prompt, train_items, tpl)
    task_items, train_items = train_items, train_items + swapped
    for w in warnings:
        log.warning(w)
    max_length = settings["max_length"]
    train_enc, report = encode(task, train_items, tpl, max_length)
    val_enc, _ = encode(task, val_items, tpl, max_length)
    if report.skipped_long_completion:
        log.warning("skipped %d training example(s) whose completion alone exceeds max_length %d (never cut): %s",
                    len(report.skipped_long_completion), max_length, ", ".join(report.skipped_long_completion[:10]))
    if not train_enc:
        raise UserError(f"no training example fits max_length {max_length}: raise it (--max-length)")
    general = encode_general(general_examples(config.replay_file), tpl, max_length)

    run_store = store or Store()
    label = f"{task.name}-{Path(config.model).name.removesuffix('.gguf')}"
    if is_main_process():
        if resume is None:
            run_id, run_dir = run_store.new_run_dir("tune", label)
        else:
            run_dir = resume
            run_id = str(json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("run_id")
                         or run_dir.name)
        if resume is None:  # a resumed run is marked running once it is known to be the same run (below)
            write_status(run_dir, "running")  # until finish(): a killed run says so, and gate/export refuse it
            run_store.record_run(run_id, "tune", task.name, config.model, loaded.sha256, run_dir, "running")
    else:  # under accelerate, the other ranks write to a scratch folder: one run folder, rank 0's
        import tempfile

        run_id, run_dir = f"{label}-rank{os.environ.get('RANK')}", Path(tempfile.mkdtemp(prefix="honed-rank-"))
    resolved = {**config.model_dump(), **settings}
    if resume is None:
        write_json_atomic(run_dir / "config.json", resolved)
    import peft
    import transformers
    import trl

    manifest = {
        "run_id": run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "task": task.name,
        "task_dir": str(task.root), "method": config.method, "prompt": task.prompt,
        "base_model": {"name": config.model, "path": loaded.source, "sha256": loaded.sha256,
                       "from_gguf": loaded.from_gguf, **loaded.extra},
        "data": {"train_items_sha256": items_hash(task_items), "val_items_sha256": items_hash(val_items),
                 "n_train": len(train_enc), "n_swapped": len(swapped), "n_val": len(val_items)},
        "config_sha256": hashlib.sha256(canonical_json(resolved).encode()).hexdigest(),
        "settings": resolved, "reasons": reasons, "warnings": warnings, "encode": report.as_dict(),
        "versions": {"honed": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__},
    }
    if resume is not None:
        manifest = _same_run(run_dir, manifest, resolved)
        write_status(run_dir, "running")
        run_store.record_run(run_id, "tune", task.name, config.model, loaded.sha256, run_dir, "running")
    write_json_atomic(run_dir / "manifest.json", manifest)

    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    top = settings.get("top_layers")
    layers = list(range(max(0, n_layers - top), n_layers)) if top and n_layers else None
    model = get_peft_model(model, LoraConfig(r=settings["rank"], lora_alpha=settings["alpha"],
                                             lora_dropout=config.dropout, target_modules=settings["target_modules"],
                                             layers_to_transform=layers, task_type="CAUSAL_LM"))
    if config.gradient_checkpointing:
        model.enable_input_require_grads()
    val_sub = val_items[: config.max_val_items]
    s = Session(task=task, config=config, cuda=cuda, loaded=loaded, tokenizer=tokenizer, model=model, tpl=tpl,
                settings=settings, train_items=train_items, val_items=val_items, train_enc=train_enc,
                val_enc=val_enc, report=report, general=general[40:], general_probe=general[:FORGETTING_PROBE],
                warnings=warnings, store=run_store, owns_store=store is None, run_id=run_id, run_dir=run_dir,
                manifest=manifest, val_sub=val_sub,
                val_prompts=[tpl.tokenize(render_prompt(task, i.inputs, tpl)) for i in val_sub])
    s.curves = {"metric": s.metric, "train": [], "val": [], "best_step": None, "alarms": []}
    s.state = {"best": None, "since_best": 0, "collapsed_in_row": 0, "base_general": None}
    return s


def _same_run(run_dir: Path, now: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the run being resumed, after checking that this process would train the same thing."""
    old = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    differ = [f"data {k}" for k in ("train_items_sha256", "val_items_sha256")
              if old.get("data", {}).get(k) != now["data"][k]]
    if old.get("base_model", {}).get("sha256") != now["base_model"]["sha256"]:
        differ.append("the base model's sha256")
    if old.get("prompt") != now["prompt"]:
        differ.append(f"the prompt ({old.get('prompt')} then, {now['prompt']} now)")
    # compared as JSON values (10 == 10.0: config.json's planned `epochs` comes back as TuneConfig's float)
    differ += [f"setting {k} ({saved.get(k)!r} then, {v!r} now)" for k, v in resolved.items()
               if json.loads(canonical_json(saved.get(k))) != json.loads(canonical_json(v))]
    if differ:
        raise UserError(f"{run_dir}: cannot resume: {'; '.join(differ)} changed since the run started, so the rest "
                        "of it would train something else; start a new run with `honed tune`")
    return old


def prompt_reason(base_task: Task, task: Task, asked: str, items: list[Item], tpl: ChatFormat) -> str:
    """Why this prompt: the tokens per example under each template (training compute goes to the prompt)."""
    def mean_tokens(t: Task) -> float:
        enc, _ = encode(t, items[:64], tpl, max_length=1 << 20)
        return sum(len(e.input_ids) for e in enc) / max(len(enc), 1)

    full = mean_tokens(base_task)
    if not base_task.has_tuned_prompt:
        return (f"base template ({full:.0f} tokens per example): the task declares no [prompt] tuned_template; a "
                "short one (the input without the label list) would cut the tokens per learned answer")
    short = mean_tokens(base_task.with_prompt("tuned"))
    ratio = full / max(short, 1)
    if task.prompt == "tuned":
        return (f"tuned template: {short:.0f} tokens per example vs {full:.0f} with the full template ({ratio:.1f}x "
                "fewer per learned answer, so more passes in the same minutes); the answer space is learned from "
                "the examples instead of re-read in every prompt"
                + (" (chosen automatically: the task declares one)" if asked == "auto" else ""))
    return (f"base template ({full:.0f} tokens per example), as asked; the task's tuned template would take "
            f"{short:.0f} ({ratio:.1f}x fewer)")


def replay_rows(s: Session) -> list[Encoded]:
    """General instruction examples mixed into training against forgetting (never the forgetting probe)."""
    n_task = len(s.train_enc)
    n_replay = round(n_task * s.config.replay_fraction / max(1e-9, 1 - s.config.replay_fraction))
    rng = random.Random(s.config.seed)
    return rng.sample(s.general, min(n_replay, len(s.general)))


def do_val(s: Session, step: int) -> ValPass:
    vp = run_val_pass(step, s.model, s.tokenizer, s.task, s.tpl, s.val_sub, s.val_prompts,
                      s.val_enc[: s.config.max_val_items], s.general_probe, s.metric)
    s.curves["val"].append({"step": step, "metric": vp.metric, "loss": vp.loss, "top_answer": vp.top_answer,
                            "top_share": round(vp.top_share, 4), "general_loss": vp.general_loss,
                            "seconds": round(vp.seconds, 2)})
    write_json_atomic(s.run_dir / "curves.json", s.curves)
    return vp


def base_pass(s: Session) -> ValPass:
    """The validation pass at step 0: the base model's metric and general loss, the bar to beat."""
    vp = do_val(s, 0)
    s.state["base_general"] = vp.general_loss
    s.curves["base"] = {"metric": vp.metric, "loss": vp.loss}
    s.state["base"] = vp
    return vp


def log_train(s: Session, step: int, loss: float, lr: float | None, epoch: float | None) -> None:
    s.curves["train"].append({"step": step, "loss": loss, "lr": lr, "epoch": epoch})


def beats(vp: ValPass, best: ValPass | None, top: float | None, tie: float, min_delta: float = 0.0) -> bool:
    """Whether pass `vp` replaces the best adapter: a val metric above every earlier pass's (`top`), or one within
    `tie` of it with a lower val loss than the best's. A small val split's metric moves by a whole item at a time
    (Banking77-NONE, 72 val items: 0.948 at step 78, 0.943 at step 117 with the val loss down from 0.126 to 0.090),
    so near-ties go to the loss; ties are measured from the highest metric seen, so a chain of them cannot drift
    down."""
    if best is None or top is None:
        return True
    if vp.metric > top + min_delta:
        return True
    return (vp.loss is not None and best.loss is not None and vp.metric >= top - tie and vp.loss < best.loss)


def val_due(passes: list[dict[str, Any]], step: int, eval_every: int, last: bool) -> bool:
    """Whether a validation pass is due after `step`: `eval_every` steps after the last pass (or at the last step).

    Counted from the last pass, not as multiples of `eval_every`: a plan that respaces its passes as it measures
    them (every 4, then every 17) answered the val split at 17 and again at 19 — two passes for two steps."""
    return last or step - (passes[-1]["step"] if passes else 0) >= eval_every


EARLY_STOP_FROM = 0.75
"""Share of the planned steps before which early stopping waits, while the learning rate decays."""


def early_stop(since_best: int, patience: int, step: int, total: int | None, schedule: str = "linear") -> bool:
    """Whether `patience` passes without a better val metric end the run. While a decaying learning rate is still
    high (the first `EARLY_STOP_FROM` of the planned steps) the val metric's dips are the noise of big steps, not a
    model that is done: the demo stopped at step 104 of 168 at 40% of its rate, its best pass (0.801, step 66)
    a spike, and shipped 0.753 on the test; the run that annealed to the end of its budget scored 0.853. The
    checkpoint is the best val pass either way, so waiting costs time the plan had granted, never the model."""
    if since_best < patience:
        return False
    return total is None or schedule == "constant" or step >= EARLY_STOP_FROM * total


def after_step(s: Session, step: int, last: bool, eval_every: int) -> bool:
    """The guardrails after an optimizer step: every `eval_every` steps (and at the last) a validation pass that
    keeps the best adapter by the task metric, raises the collapse and forgetting alarms and decides early
    stopping. Returns True when training should stop."""
    config = s.config
    if not val_due(s.curves["val"], step, eval_every, last):
        return False
    top = max((p["metric"] for p in s.curves["val"] if p["step"] > 0), default=None)  # before this pass
    vp = do_val(s, step)
    best = s.state["best"]
    tie = config.metric_tie if config.metric_tie is not None else 1 / max(len(vp.predictions), 1)
    improved = beats(vp, best, top, tie, config.min_delta)
    if improved:
        s.state["best"], s.state["since_best"] = vp, 0
        s.curves["best_step"] = vp.step
    else:
        s.state["since_best"] += 1
    data_top = s.data_top
    if vp.collapsed(config.collapse_share, data_top):
        s.state["collapsed_in_row"] += 1
        msg = (f"COLLAPSE ALARM at step {vp.step}: {vp.top_share:.0%} of val predictions are "
               f"{vp.top_answer!r} while the most common expected answer is {data_top:.0%} of val")
        log.warning(msg)
        s.curves["alarms"].append({"step": vp.step, "kind": "collapse", "message": msg})
    else:
        s.state["collapsed_in_row"] = 0
    g0 = s.state["base_general"]
    if g0 and vp.general_loss and vp.general_loss > 1.5 * g0:
        msg = (f"FORGETTING at step {vp.step}: loss on general prompts rose from {g0:.3f} to "
               f"{vp.general_loss:.3f} (+{vp.general_loss / g0 - 1:.0%})")
        log.warning(msg)
        s.curves["alarms"].append({"step": vp.step, "kind": "forgetting", "message": msg})
    stop = False
    if config.on_collapse == "stop" and s.state["collapsed_in_row"] >= config.collapse_patience:
        s.state["stopped"], stop = "collapse", True
    elif early_stop(s.state["since_best"], config.patience, step, s.plan.run_total if s.plan else None,
                    config.lr_scheduler):
        s.state["stopped"], stop = "early_stopping", True
    write_json_atomic(s.run_dir / "curves.json", s.curves)
    if s.plan is not None:
        from honed.train.resume import save_checkpoint

        # last/ before best/: a kill between the two leaves a checkpoint that knows this pass was the best, and
        # resume copies its adapter to best/; the other order could leave a best/ no checkpoint knows of
        save_checkpoint(s, step)
    if improved:
        save_adapter(s.model, s.best_dir)
    return stop


def save_adapter(model: Any, dest: Path, extra: Callable[[Path], None] | None = None) -> None:
    """Write the adapter beside `dest` and rename it into place: a kill mid-save never leaves a torn best/.
    `extra(folder)` writes more files into the folder before it is renamed (a checkpoint's state)."""
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    if extra is not None:
        extra(tmp)
    old = dest.with_name(f".{dest.name}.old")
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        dest.replace(old)
    tmp.replace(dest)
    shutil.rmtree(old, ignore_errors=True)


def guardrails(s: Session, eval_every: int) -> Any:
    """`after_step` as a transformers TrainerCallback, for the recipes that train through TRL (DPO)."""
    from transformers import TrainerCallback

    class Guardrails(TrainerCallback):
        def on_log(self, args: Any, st: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                log_train(s, st.global_step, logs["loss"], logs.get("learning_rate"), logs.get("epoch"))

        def on_step_end(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            if after_step(s, st.global_step, st.global_step >= st.max_steps, eval_every):
                control.should_training_stop = True

    return Guardrails()


def curves_html(curves: dict[str, Any], metric: str) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from honed.report.html import figure_div, page

    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", f"val {metric}"))
    tr = curves["train"]
    fig.add_trace(go.Scatter(x=[p["step"] for p in tr], y=[p["loss"] for p in tr], name="train loss"), 1, 1)
    val = curves["val"]
    fig.add_trace(go.Scatter(x=[p["step"] for p in val], y=[p["loss"] for p in val], name="val loss",
                             mode="lines+markers"), 1, 1)
    fig.add_trace(go.Scatter(x=[p["step"] for p in val], y=[p["metric"] for p in val], name=f"val {metric}",
                             mode="lines+markers"), 1, 2)
    if curves.get("best_step") is not None:
        fig.add_vline(x=curves["best_step"], line_dash="dash", line_color="green", row=1, col=2)
    fig.update_layout(height=420)
    return page("Training curves", f"best checkpoint: step {curves.get('best_step')} by val {metric}",
                [("", figure_div(fig))])


def train_with_guardrails(s: Session, trainer: Any) -> tuple[str, Any, float]:
    """Run the trainer; Ctrl-C keeps what was done (the best adapter so far is already on disk)."""
    t0 = time.perf_counter()
    try:
        return "complete", trainer.train(), time.perf_counter() - t0
    except KeyboardInterrupt:
        return "interrupted", None, time.perf_counter() - t0


def finish(s: Session, steps: int, train_loss: float | None, status: str, train_s: float, n_tokens: float,
           extra: dict[str, Any] | None = None) -> TuneSummary:
    """Selection (best step by the val metric, and why), summary, curves, registry; the run folder is complete."""
    config, curves, metric = s.config, s.curves, s.metric
    best: ValPass | None = s.state["best"]
    base: ValPass = s.state["base"]
    data_top = s.data_top
    last_train = curves["train"][-1]["loss"] if curves["train"] else None
    best_train = next((p["loss"] for p in reversed(curves["train"]) if best and p["step"] <= best.step), None)
    collapsed_best = best is not None and best.collapsed(config.collapse_share, data_top)
    selection = {
        "metric": metric,
        "base_value": base.metric,
        "best_step": best.step if best else None,
        "best_value": best.metric if best else None,
        "stopped_by": s.state.get("stopped", "max_steps/epochs" if status == "complete" else status),
        "why": (f"chosen by the val {metric} ({best.metric:.3f} at step {best.step}; highest "
                f"{max(p['metric'] for p in curves['val'] if p['step'] > 0):.3f}; near-ties go to the lower val "
                f"loss; base {base.metric:.3f}); train loss was {best_train} there and {last_train} at the end — "
                "train loss never picks the checkpoint" if best else "no validation pass ran"),
        "collapsed": collapsed_best,
        "evals": len(curves["val"]) - 1,
    }
    summary = TuneSummary.model_validate({
        "run_id": s.run_id, "run_dir": str(s.run_dir), "method": config.method,
        "status": "collapsed" if collapsed_best else status,
        "adapter": str(s.best_dir) if s.best_dir.exists() else None, "selection": selection,
        "train_seconds": round(train_s, 1), "steps": steps,
        "train_tokens_per_s": round(n_tokens / train_s, 1) if train_s > 0 else None,
        "train_loss": train_loss, "encode": s.report.as_dict(), "warnings": s.warnings,
        "alarms": curves["alarms"], "prompt": s.task.prompt, **(extra or {}),
    })
    write_json_atomic(s.run_dir / "selection.json", selection)
    write_json_atomic(s.run_dir / "curves.json", curves)
    (s.run_dir / "curves.html").write_text(curves_html(curves, metric), encoding="utf-8")
    write_summary(s.run_dir, summary)
    shutil.rmtree(s.run_dir / "trainer", ignore_errors=True)
    if summary.status != "interrupted":  # a Ctrl-C'd run may still be resumed; a finished one has no use for it
        shutil.rmtree(s.run_dir / "last", ignore_errors=True)
    if is_main_process():
        write_status(s.run_dir, summary.status)  # last: only now is the run folder complete
    if is_main_process():
        s.store.record_run(s.run_id, "tune", s.task.name, config.model, s.loaded.sha256, s.run_dir,
                           summary.status, {"primary_metric": metric, "value": best.metric if best else None})
    if s.owns_store:
        s.store.close()
    if collapsed_best:
        log.warning("the best checkpoint itself is collapsed: do not ship it (seed 000)")
    return summary

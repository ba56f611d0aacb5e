"""`tune(task, config)`: LoRA / QLoRA supervised fine-tuning with TRL + PEFT, and honed's guardrails.

One flat recipe, top to bottom: load → render with the serving template → check train/serve identity →
encode (completion-only, never cut a completion) → mix replay → train with a validation pass every N steps →
keep the best checkpoint by the task metric → curves, manifest, registry.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

from honed import __version__
from honed.errors import UserError
from honed.store import Store, canonical_json, write_json_atomic
from honed.task.data import Item, items_hash, load_items
from honed.task.spec import Task
from honed.train.config import TuneConfig
from honed.train.dataset import EncodeReport, Encoded, TemplateInfo, encode, render_prompt, tokenize_text
from honed.train.validate import ValPass, expected_top_share, run_val_pass

log = logging.getLogger("honed")
TARGETS_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class Collapse(UserError):
    """Validation predictions collapsed onto one answer (seed 000's "NONE to everything")."""


def template_info(tokenizer: Any, chat_template: str | None) -> TemplateInfo:
    return TemplateInfo(chat_template=chat_template, bos_token=tokenizer.bos_token or "",
                        eos_token=tokenizer.eos_token or "", eos_token_id=int(tokenizer.eos_token_id))


def serving_check(task: Task, model: str, item: Item, tokenizer: Any, tpl: TemplateInfo) -> None:
    """Render and tokenize one prompt the way the served GGUF will (llama.cpp, its own template and vocab) and
    refuse to train if the training prefix differs. Skipped for HF folders (no GGUF to serve yet)."""
    from honed.backends.models import resolve_gguf
    from honed.train.dataset import check_serving_identity

    try:
        gguf = resolve_gguf(model)
    except UserError:
        return
    import llama_cpp

    from honed.task.prompt import render_chat, render_plain

    vocab = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    try:
        template = vocab.metadata.get("tokenizer.chat_template")
        bos = vocab._model.token_get_text(vocab.token_bos()) if vocab.token_bos() >= 0 else ""
        eos = vocab._model.token_get_text(vocab.token_eos()) if vocab.token_eos() >= 0 else ""
        from honed.task.prompt import build_messages

        msgs = build_messages(task, item.inputs)
        prompt = render_chat(msgs, template, bos_token=bos, eos_token=eos) if template else render_plain(msgs)
        has_bos = bool(bos) and prompt.startswith(bos)
        tokens = vocab.tokenize(prompt.encode(), add_bos=not has_bos, special=True)
    finally:
        vocab.close()
    check_serving_identity(task, item, tokenizer, tpl, tokens, prompt)


def general_examples(path: str | None, limit: int = 400) -> list[dict]:
    """General instruction pairs (honed's own set, or the user's), for replay and the forgetting check."""
    from honed.data.replay import load_replay

    return [{"prompt": r.prompt, "response": r.response} for r in load_replay(Path(path) if path else None)][:limit]


def _encode_general(pairs: list[dict], tokenizer: Any, tpl: TemplateInfo, max_length: int) -> list[Encoded]:
    from honed.task.prompt import render_chat
    from honed.types import Message

    out = []
    for i, p in enumerate(pairs):
        msgs = (Message("user", p["prompt"]),)
        if tpl.chat_template:
            prompt = render_chat(msgs, tpl.chat_template, bos_token=tpl.bos_token, eos_token=tpl.eos_token)
        else:
            prompt = p["prompt"] + "\n\nAnswer:"
        completion = (p["response"] if tpl.chat_template else " " + p["response"]) + tpl.eos_token
        p_ids = tokenize_text(tokenizer, prompt, tpl)
        c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if len(p_ids) + len(c_ids) <= max_length:
            out.append(Encoded(f"general-{i}", p_ids + c_ids, [0] * len(p_ids) + [1] * len(c_ids), len(p_ids),
                               len(c_ids)))
    return out


def _curves_html(curves: dict[str, Any], metric: str) -> str:
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


def tune(task: Task, config: TuneConfig, *, store: Store | None = None) -> dict[str, Any]:
    """Fine-tune `config.model` on the task's train split; returns the run summary (also in the run folder)."""
    try:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer
    except ImportError:
        from honed.errors import MissingDependency

        raise MissingDependency("trl", extra="train", why="fine-tuning") from None
    from datasets import Dataset

    from honed.train.loading import load_base

    cuda = torch.cuda.is_available()
    if config.method == "qlora" and not cuda:
        raise UserError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels); on this machine use --method lora")
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    train_items = load_items(task, "train")
    val_items = load_items(task, "val")
    try:
        from honed.data.lock import assert_not_locked

        assert_not_locked(task, train_items + val_items)
    except ImportError:  # the data stage is optional for a bare task folder
        pass
    from honed.train.plan_defaults import resolve_settings

    qcfg = None
    if config.method == "qlora":
        from transformers import BitsAndBytesConfig

        qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    loaded = load_base(config.model, dtype="bfloat16" if cuda else "float32",
                       device_map="auto" if cuda else None, quantization_config=qcfg)
    tokenizer, model = loaded.tokenizer, loaded.model
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tpl = template_info(tokenizer, loaded.chat_template)
    serving_check(task, config.model, train_items[0], tokenizer, tpl)

    settings, reasons, warnings = resolve_settings(task, config, loaded, train_items, tokenizer, tpl)
    for w in warnings:
        log.warning(w)
    max_length = settings["max_length"]
    train_enc, report = encode(task, train_items, tokenizer, tpl, max_length)
    val_enc, _ = encode(task, val_items, tokenizer, tpl, max_length)
    if report.skipped_long_completion:
        log.warning("skipped %d training example(s) whose completion alone exceeds max_length %d (never cut): %s",
                    len(report.skipped_long_completion), max_length, ", ".join(report.skipped_long_completion[:10]))
    if not train_enc:
        raise UserError(f"no training example fits max_length {max_length}: raise it (--max-length)")
    general = _encode_general(general_examples(config.replay_file), tokenizer, tpl, max_length)
    n_replay = round(len(train_enc) * config.replay_fraction / max(1e-9, 1 - config.replay_fraction))
    rng = random.Random(config.seed)
    replay = rng.sample(general[40:], min(n_replay, max(0, len(general) - 40)))
    general_probe = general[:40]  # never trained on: the forgetting check
    train_rows = [{"input_ids": e.input_ids, "completion_mask": e.completion_mask} for e in train_enc + replay]

    run_store = store or Store()
    run_id, run_dir = run_store.new_run_dir("tune", f"{task.name}-{Path(config.model).name.removesuffix('.gguf')}")
    run_store.record_run(run_id, "tune", task.name, config.model, loaded.sha256, run_dir, "running")
    best_dir = run_dir / "best"
    resolved = {**config.model_dump(), **settings}
    write_json_atomic(run_dir / "config.json", resolved)
    manifest = {
        "run_id": run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "task": task.name,
        "task_dir": str(task.root),
        "base_model": {"name": config.model, "path": loaded.source, "sha256": loaded.sha256,
                       "from_gguf": loaded.from_gguf},
        "data": {"train_items_sha256": items_hash(train_items), "val_items_sha256": items_hash(val_items),
                 "n_train": len(train_enc), "n_replay": len(replay), "n_val": len(val_items)},
        "config_sha256": __import__("hashlib").sha256(canonical_json(resolved).encode()).hexdigest(),
        "settings": resolved, "reasons": reasons, "warnings": warnings, "encode": report.as_dict(),
        "versions": {"honed": __version__, "python": platform.python_version(), "torch": torch.__version__,
                     **{m: __import__(m).__version__ for m in ("transformers", "peft", "trl")}},
    }
    write_json_atomic(run_dir / "manifest.json", manifest)

    model = get_peft_model(model, LoraConfig(r=settings["rank"], lora_alpha=settings["alpha"],
                                             lora_dropout=config.dropout, target_modules=settings["target_modules"],
                                             task_type="CAUSAL_LM"))
    if config.gradient_checkpointing:
        model.enable_input_require_grads()

    val_sub = val_items[: config.max_val_items]
    val_prompts = [tokenize_text(tokenizer, render_prompt(task, i.inputs, tpl), tpl) for i in val_sub]
    metric = task.primary_metric
    data_top = expected_top_share(task, val_sub)
    steps_per_epoch = math.ceil(len(train_rows) / (config.batch_size * config.grad_accum))
    eval_every = config.eval_every or max(1, steps_per_epoch // 4)
    curves: dict[str, Any] = {"metric": metric, "train": [], "val": [], "best_step": None, "alarms": []}
    state: dict[str, Any] = {"best": None, "since_best": 0, "collapsed_in_row": 0, "base_general": None}

    def do_val(step: int) -> ValPass:
        vp = run_val_pass(step, model, tokenizer, task, tpl, val_sub, val_prompts, val_enc[: config.max_val_items],
                          general_probe, metric)
        curves["val"].append({"step": step, "metric": vp.metric, "loss": vp.loss, "top_answer": vp.top_answer,
                              "top_share": round(vp.top_share, 4), "general_loss": vp.general_loss,
                              "seconds": round(vp.seconds, 2)})
        write_json_atomic(run_dir / "curves.json", curves)
        return vp

    class Guardrails(TrainerCallback):
        def on_log(self, args: Any, st: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                curves["train"].append({"step": st.global_step, "loss": logs["loss"],
                                        "lr": logs.get("learning_rate"), "epoch": logs.get("epoch")})

        def on_step_end(self, args: Any, st: Any, control: Any, **kw: Any) -> None:
            if st.global_step % eval_every and st.global_step < st.max_steps:
                return
            vp = do_val(st.global_step)
            best = state["best"]
            if best is None or vp.metric > best.metric + config.min_delta:
                state["best"], state["since_best"] = vp, 0
                model.save_pretrained(str(best_dir))  # the adapter only: small, atomic enough per file
                curves["best_step"] = vp.step
            else:
                state["since_best"] += 1
            collapsed = vp.top_share >= config.collapse_share and data_top < 0.5
            if collapsed:
                state["collapsed_in_row"] += 1
                msg = (f"COLLAPSE ALARM at step {vp.step}: {vp.top_share:.0%} of val predictions are "
                       f"{vp.top_answer!r} while the most common expected answer is {data_top:.0%} of val")
                log.warning(msg)
                curves["alarms"].append({"step": vp.step, "kind": "collapse", "message": msg})
            else:
                state["collapsed_in_row"] = 0
            g0 = state["base_general"]
            if g0 and vp.general_loss and vp.general_loss > 1.5 * g0:
                msg = (f"FORGETTING at step {vp.step}: loss on general prompts rose from {g0:.3f} to "
                       f"{vp.general_loss:.3f} (+{vp.general_loss / g0 - 1:.0%})")
                log.warning(msg)
                curves["alarms"].append({"step": vp.step, "kind": "forgetting", "message": msg})
            if config.on_collapse == "stop" and state["collapsed_in_row"] >= config.collapse_patience:
                state["stopped"] = "collapse"
                control.should_training_stop = True
            elif state["since_best"] >= config.patience:
                state["stopped"] = "early_stopping"
                control.should_training_stop = True
            write_json_atomic(run_dir / "curves.json", curves)

    base_pass = do_val(0)
    state["base_general"] = base_pass.general_loss
    curves["base"] = {"metric": base_pass.metric, "loss": base_pass.loss}
    args = SFTConfig(
        output_dir=str(run_dir / "trainer"), per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=settings["learning_rate"],
        num_train_epochs=settings["epochs"], max_steps=config.max_steps or -1, lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay, logging_steps=1, save_strategy="no",
        eval_strategy="no", report_to=config.report_to or "none", seed=config.seed, data_seed=config.seed,
        completion_only_loss=True, padding_free=config.packing, max_length=None, bf16=cuda, use_cpu=not cuda,
        neftune_noise_alpha=config.neftune_alpha, gradient_checkpointing=config.gradient_checkpointing,
        dataloader_num_workers=0, remove_unused_columns=True, disable_tqdm=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                         processing_class=tokenizer, callbacks=[Guardrails()])
    t0 = time.perf_counter()
    status = "complete"
    try:
        out = trainer.train()
    except KeyboardInterrupt:
        status = "interrupted"
        out = None
    train_s = time.perf_counter() - t0
    n_tokens = sum(len(r["input_ids"]) for r in train_rows) * (trainer.state.epoch or 0)
    best: ValPass | None = state["best"]
    last_train = curves["train"][-1]["loss"] if curves["train"] else None
    best_train = next((p["loss"] for p in reversed(curves["train"]) if best and p["step"] <= best.step), None)
    collapsed_best = best is not None and best.top_share >= config.collapse_share and data_top < 0.5
    selection = {
        "metric": metric,
        "base_value": base_pass.metric,
        "best_step": best.step if best else None,
        "best_value": best.metric if best else None,
        "stopped_by": state.get("stopped", "max_steps/epochs" if status == "complete" else status),
        "why": (f"chosen by the highest val {metric} ({best.metric:.3f} at step {best.step}; base "
                f"{base_pass.metric:.3f}); train loss was {best_train} there and {last_train} at the end — "
                "train loss never picks the checkpoint" if best else "no validation pass ran"),
        "collapsed": collapsed_best,
        "evals": len(curves["val"]) - 1,
    }
    summary = {
        "run_id": run_id, "run_dir": str(run_dir), "status": "collapsed" if collapsed_best else status,
        "adapter": str(best_dir) if best_dir.exists() else None, "selection": selection,
        "train_seconds": round(train_s, 1), "steps": trainer.state.global_step,
        "train_tokens_per_s": round(n_tokens / train_s, 1) if train_s > 0 else None,
        "train_loss": out.training_loss if out else None, "encode": report.as_dict(), "warnings": warnings,
        "alarms": curves["alarms"],
    }
    write_json_atomic(run_dir / "selection.json", selection)
    write_json_atomic(run_dir / "curves.json", curves)
    (run_dir / "curves.html").write_text(_curves_html(curves, metric), encoding="utf-8")
    write_json_atomic(run_dir / "summary.json", summary)
    import shutil

    shutil.rmtree(run_dir / "trainer", ignore_errors=True)
    run_store.record_run(run_id, "tune", task.name, config.model, loaded.sha256, run_dir, summary["status"],
                         {"primary_metric": metric, "value": best.metric if best else None})
    if store is None:
        run_store.close()
    if collapsed_best:
        log.warning("the best checkpoint itself is collapsed: do not ship it (seed 000)")
    return summary


__all__ = ["Collapse", "EncodeReport", "tune"]

"""usage.md's later sections: sampling settings and why, hardware needs, known limitations, how to retrain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from honed.evaluate.scorers import INVALID
from honed.export import docs_runs as dr
from honed.export.docs_md import fence, fmt, fmt_ci, recommended_rung, rung_value, table
from honed.export.package import Manifest, Package
from honed.task.spec import Task

_ANSWER = {"classify": "one label", "pick": "one number or NONE", "extract": "the JSON object",
           "generate": "the whole text"}


def sampling_section(task: Task, chat: bool) -> list[str]:
    g = task.spec.generation
    greedy = g.temperature == 0
    if greedy and task.kind in ("classify", "pick", "extract"):
        why_t = ("greedy: the task has one right answer, so sampling adds variance and no accuracy; every "
                 "number in benchmarks.md was measured greedy and holds only for greedy decoding")
    elif greedy:
        why_t = "greedy: the output must follow a fixed format, and the measurements were taken greedy"
    else:
        why_t = (f"the task sets temperature {g.temperature}: answers vary between calls (benchmarks.md measured "
                 "the same setting); use a fixed seed to reproduce one")
    rows = [
        ["temperature", fmt(g.temperature, 2), why_t],
        ["top_p", fmt(g.top_p, 2), "no nucleus cut" if g.top_p == 1 else "the task's setting"],
        ["max_tokens", str(task.max_tokens),
         f"enough for {_ANSWER[task.kind]}; an output cut at this budget is counted as a failure "
         "(cut_at_max_tokens), never as an answer"],
        ["seed", str(g.seed), "the seed of the measurements (matters only when temperature > 0)"],
        ["repeat_penalty", "1.0", "none in the measurements; Ollama and llama_cpp.server default to 1.1, which "
         "changes even greedy answers: the examples set it to 1.0"],
        ["top_k / min_p", "0 / 0", "off in the measurements (irrelevant when greedy)"],
    ]
    if task.kind != "generate":
        rows.append(["constrained decoding", "on" if g.constrained else "off",
                     "the answer space is enforced by a grammar (labels, numbers or the JSON schema), as measured"
                     if g.constrained else "measured free: a constraint would change the numbers; re-measure with "
                     "`honed eval --constrained` before turning it on"])
    if g.think is False:
        rows.append(["thinking", "off", "thinking models are asked not to think (seed 003: it costs tokens and "
                     "adds empty-after-thinking failures on structured answers)"])
    src = "`task/honed.toml` [generation]" + ("" if g.max_tokens else f" (max_tokens: the {task.kind} default)")
    return ["## Sampling settings and why", "", table(["setting", "value", "why"], rows), "", f"Source: {src}.", ""]


def hardware_section(pkg: Package, manifest: Manifest) -> list[str]:
    rows = []
    for r in manifest.rungs:
        path = pkg.root / r.file
        size = path.stat().st_size / 2**20 if path.is_file() else None
        rows.append([r.quant + (" (recommended)" if r.quant.upper() == manifest.recommended.upper() else ""),
                     f"`{r.file}`", fmt(size, 1), fmt(rung_value(r, "peak_memory_mb"), 0),
                     fmt(rung_value(r, "p50_ms"), 1), fmt(rung_value(r, "p95_ms"), 1)])
    rec = recommended_rung(manifest)
    peak = rung_value(rec, "peak_memory_mb")
    need = (f"The recommended rung peaked at {fmt(peak, 0)} MB of memory while it was evaluated (the whole "
            "evaluating process, Python included: llama.cpp alone needs less); plan for that much free RAM (or "
            "VRAM when offloading). " if isinstance(peak, (int, float)) else "")
    return ["## Hardware needs", "",
            need + "A CPU is enough for these sizes; a GPU only lowers latency. Latency grows with the prompt length "
            "and falls with more cores.", "",
            table(["rung", "file", "file MB", "peak memory MB", "p50 ms", "p95 ms"], rows), "",
            "Source: manifest.json `rungs[].metrics` (measured by `honed export` on its machine); file sizes from "
            "the files in this folder.", ""]


def _run_for_limits(manifest: Manifest) -> tuple[dr.EvalRun | None, str]:
    """The eval run that describes the shipped model best: the recommended rung's, else the gate's tuned run."""
    rec = recommended_rung(manifest)
    candidates = [(rung_value(rec, "eval_run_dir"), f"the {rec.quant} rung's eval run"),
                  ((manifest.gate.get("tuned") or {}).get("eval_run_dir"), "the gate's tuned eval run")]
    for run_dir, what in candidates:
        if run_dir and (Path(run_dir) / "items.jsonl").is_file():
            run = dr.read_run(run_dir)
            return run, f"{what} `{run.run_id}`"
    return None, ""


def limitations_section(pkg: Package, manifest: Manifest, task: Task) -> list[str]:
    gate = manifest.gate
    out = ["## Known limitations", ""]
    status = gate.get("status")
    if gate.get("forced") and status is None:
        out += ["- **This package was exported without a gate run (`--force`).** Nothing shows that the fine-tune "
                "beats its base.", ""]
    elif gate.get("forced") or status == "FAIL":
        out += [f"- **This package was exported although its gate said {status}.** The fine-tune did not prove it "
                "beats its base; see benchmarks.md before using it.", ""]
    tuned = gate.get("tuned") or {}
    metric = gate.get("primary_metric") or manifest.acceptance.primary_metric
    if tuned:
        out.append(f"- On unseen inputs like the test set, expect `{metric}` of about {fmt(tuned.get('value'))} "
                   f"(95% CI {fmt_ci(tuned.get('ci'))}, {gate.get('n_items', 'n/a')} test items; gate.json, tuned "
                   "model before quantization).")
        n = gate.get("n_items")
        if isinstance(n, int) and n < 100:
            out.append(f"- The test set has only {n} items, so that interval is wide: a few hundred more "
                       "labelled items would narrow it.")
    rec = recommended_rung(manifest)
    if rung_value(rec, "metric") is not None:
        out.append(f"- The shipped {rec.quant} rung scored {fmt(rung_value(rec, 'metric'))} (95% CI "
                   f"{fmt_ci(rung_value(rec, 'ci'))}; manifest.json rungs).")
    run, what = _run_for_limits(manifest)
    if run is not None:
        conf = dr.confusion(task, run.records)
        if conf is not None:
            for true, pred, count, total in dr.top_confusions(conf):
                did = "gives no valid answer on" if pred == INVALID else f"answers `{pred}` on"
                out.append(f"- It {did} {count} of {total} `{true}` items ({what}).")
        for cause, recs in dr.failures_by_cause(run.records).items():
            out.append(f"- {cause}: {len(recs)} of {len(run.records)} test items ({what}).")
    out += ["- It is as good as its training data: inputs unlike those (topics, phrasing, length) were not measured.",
            ""]
    return out


def _toml_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list) and value and all(isinstance(v, (int, float, str)) and not isinstance(v, bool)
                                                 for v in value):
        return json.dumps(value)
    return None  # None, empty lists and tables: left to their defaults


def tune_toml(config: dict[str, Any]) -> str:
    """A `[tune]` table `honed tune --config` accepts: the run's resolved settings, TuneConfig keys only."""
    from honed.train.config import TuneConfig

    lines = ["[tune]"]
    for key in TuneConfig.model_fields:
        if key in config and key != "force":
            value = _toml_value(config[key])
            if value is not None:
                lines.append(f"{key} = {value}")
    return "\n".join(lines)


def retrain_section(manifest: Manifest, task: Task) -> list[str]:
    tune = manifest.tune or {}
    task_dir = manifest.gate.get("task_dir") or "TASK_DIR"
    out = ["## How to retrain", "",
           f"This package came from tune run `{tune.get('run_id') or manifest.gate.get('run_id', 'n/a')}` on the task "
           f"folder `{task_dir}` (its train and val splits are not in this package; `task/` holds the test set). "
           "With more or corrected data, re-run the loop with the same settings:", ""]
    if tune.get("config"):
        out += ["`tune.toml` (the run's resolved settings, from manifest.json `tune.config`):", "",
                fence(tune_toml(tune["config"]), "toml"), ""]
        cfg = "--config tune.toml "
    else:
        out += ["(manifest.json does not record the run's settings: the planner will choose them again.)", ""]
        cfg = ""
    out += [fence("\n".join([
        f"honed data check {task_dir}          # contamination and balance, test set still locked",
        f"honed tune {task_dir} {cfg} # prints the new run folder, RUN",
        "honed gate RUN                 # tuned vs base on the locked test set",
        "honed export RUN               # this package again, with a new version",
        "honed verify PACKAGE"]), "sh"), ""]
    if manifest.hashes:
        out += ["The data and config this package was trained with (manifest.json `hashes`); a retrain on other data "
                "gets other hashes:", "", table(["what", "sha256"], [[k, f"`{v}`"] for k, v in manifest.hashes.items()]),
                ""]
    return out

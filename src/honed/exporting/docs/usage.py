"""usage.md: what the model does and does not, its prompt format, the copy-paste examples (`examples.py`),
sampling settings and why, hardware needs, known limitations, how to retrain.

A pure function of the package's files and the eval run folders its manifest names: nothing is re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from honed.display import fmt, fmt_ci
from honed.errors import UserError
from honed.evaluate.document import EvalRun, read_eval_run
from honed.evaluate.scorers import INVALID
from honed.exporting.docs import runs as dr
from honed.exporting.docs.examples import examples_section
from honed.exporting.docs.markdown import fence, table
from honed.exporting.package import Manifest, Package
from honed.task.chat import read_gguf
from honed.task.prompt import decide_constrained
from honed.task.spec import Task

_ANSWER = {"classify": "one label", "pick": "one number or NONE", "extract": "the JSON object",
           "generate": "the whole text"}


def render_usage(pkg_root: Path, manifest: Manifest, task: Task) -> str:
    """usage.md: what it does and does not, the prompt format with three real copy-paste examples, sampling
    settings and why, hardware needs, known limitations, how to retrain."""
    pkg = Package(Path(pkg_root), manifest)
    rec = recommended_rung(manifest)
    gguf = pkg.root / rec.file
    tpl = read_gguf(gguf)
    ollama_model = str(manifest.ollama_model or f"{manifest.task}:{manifest.version}")
    ollama_model = ollama_model.lower()
    out = [f"# {manifest.task} {manifest.version}: usage", "",
           f"A fine-tune of `{manifest.base_model.get('name')}` for one `{task.kind}` task, shipped as GGUF files "
           f"(recommended: `{rec.file}`, {rec.quant}), the unmerged adapter (`adapter/`), an Ollama `Modelfile`, "
           "the task (`task/`) and its locked test set. `benchmarks.md` has the measurements; `honed verify .` "
           "re-checks every file's sha256 and re-runs the anchor items.", ""]
    out += _does_section(task, manifest)
    out += _prompt_section(task, tpl, manifest)
    out += examples_section(pkg, task, tpl, rec.file, ollama_model)
    out += sampling_section(task, tpl.is_chat)
    out += hardware_section(pkg, manifest)
    out += limitations_section(pkg, manifest, task)
    out += retrain_section(manifest, task)
    return "\n".join(out).rstrip() + "\n"


def _does_section(task: Task, manifest: Manifest) -> list[str]:
    acc = manifest.acceptance
    out = ["## What it does", "", task.spec.description or f"The `{task.name}` task.", ""]
    if task.spec.classify:
        c = task.spec.classify
        out += ["It answers with exactly one of these labels:", ""]
        out += [f"- `{label}`" + (f": {c.descriptions[label]}" if label in c.descriptions else "")
                for label in c.all_labels]
    elif task.spec.pick:
        out += [f"Given a numbered list of candidates (input field `{task.spec.pick.candidates_field}`), it "
                f"answers with the number of the one that fits, or `{task.spec.pick.none_label}`."]
    elif task.kind == "extract":
        out += ["It answers with one JSON object that satisfies this schema (from `task/`):", "",
                fence(json.dumps(task.schema, ensure_ascii=False, indent=2), "json")]
        out += _relations_lines(task)
    elif task.spec.generate:
        out += ["It writes text that must pass these format rules (regular expressions):", ""]
        out += [f"- `{r.name}`: `{r.pattern}`" + ("" if r.must_match else " must NOT match")
                for r in task.spec.generate.rules]
    out += ["", f"Acceptance: `{acc.primary_metric}` ≥ {fmt(acc.min_value)} on the locked test set (the gate's "
            "threshold, manifest.json `acceptance`); `honed monitor` re-checks it on anchor items."]
    if task.spec.acceptance.min_value is None:
        out += ["", "The task states no absolute bar (`[acceptance] min_value` in honed.toml): this minimum is only "
                "the base model's score plus the required relative gain, and says nothing about whether the model "
                "is good enough for your use."]
    else:
        out += ["", f"The task's own bar is `{acc.primary_metric}` ≥ {fmt(task.spec.acceptance.min_value)} "
                "(`[acceptance] min_value`): the gate checked it."]
    bars = task.spec.acceptance.min_metrics
    if bars:
        out += ["", "Its bars for other metrics (`[acceptance] min_metrics`), each checked by the gate on the tuned "
                "model's test answers and by `honed monitor` on the anchors: "
                + ", ".join(f"`{m}` ≥ {fmt(v)}" for m, v in bars.items()) + "."]
    out += [""]
    out += ["## What it does not do", ""]
    if task.kind == "classify":
        none = task.none_label
        out.append("- It knows no label outside the list above; " +
                   (f"anything else should get `{none}`." if none else
                    "there is no out-of-scope label, so an unrelated input still gets one of them."))
    elif task.kind == "pick":
        out.append("- It does not judge candidates it is not given, nor rank them: one number or "
                   f"`{task.none_label}`.")
    elif task.kind == "extract":
        out.append("- It extracts only what the schema has keys for, and does not check facts against any source.")
    else:
        out.append("- It follows the format; it does not check that the content is true.")
    out += ["- It is not a chat assistant: any other instruction or prompt wording is outside what was measured.",
            "- It was not tested on inputs unlike the test set (other languages, much longer texts).", ""]
    return out


def _relations_lines(task: Task) -> list[str]:
    """How answers' relationships are checked against the task's allowed triples, and what a client that calls
    the model without honed must do to get the measured answers."""
    ex = task.spec.extract
    if ex is None or not ex.allowed_relationships:
        return []
    by_rel: dict[str, list[str]] = {}
    for source, rel, target in ex.allowed_relationships:
        by_rel.setdefault(rel, []).append(f"{source} → {target}")
    lines = ["", f"Its relationships are checked against the task's {len(ex.allowed_relationships)} allowed "
            "(source type, relation, target type) triples (`[extract] allowed_relationships`), by the entity types "
            "of the same answer: a relationship listed only the other way round is turned round (source and target "
            "swapped), one listed neither way is dropped; a relation with no triple, or an end the answer does not "
            "type, is left as written. honed applies this when it parses an answer (`honed serve`, `honed eval`, "
            "every figure in benchmarks.md); a client that calls the GGUF directly (Ollama, llama.cpp) gets the "
            "model's unchecked JSON: apply the same rule, or expect the `relationship_unchecked_f1` of "
            "benchmarks.md instead of `relationship_f1`.", ""]
    return lines + [f"- `{rel}`: " + ", ".join(pairs) for rel, pairs in by_rel.items()]


def _prompt_section(task: Task, tpl: Any, manifest: Manifest) -> list[str]:
    out = ["## Prompt format", "",
           "Every request is built by honed's one prompt builder (`honed.task.prompt.build_messages`) from "
           "`task/honed.toml`: the same text the model was trained, evaluated and is served on. Send the messages "
           "exactly; a reworded prompt is an unmeasured model."]
    if task.prompt == "tuned":
        out += ["", "The model was fine-tuned on the task's short `tuned_template` (the answer space is learned, "
                "not re-read in every prompt), so that is the template it is served with."]
    if task.prompt_system:
        out += ["", "System message template:", "", "```jinja", task.prompt_system.strip(), "```"]
    out += ["", "User message template (Jinja2; the item's input fields are its variables):", "", "```jinja",
            task.prompt_template.strip(), "```", ""]
    if tpl.is_chat:
        checked = manifest.round_trip
        out += ["The model's own chat template (stored in the GGUF) turns the messages into the text below; "
                "llama.cpp servers apply it themselves, and the Ollama Modelfile carries the same template"
                + (" (export's round-trip check, manifest.json `round_trip`)." if checked else
                   " (check it: this manifest records no round-trip check)."), ""]
    else:
        out += ["The model has no chat template (a base model): the prompt is plain text ending in `Answer:`, sent "
                "to the completion endpoint, and the answer ends at a blank line.", ""]
    return out


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
        constrained = decide_constrained(task)
        rows.append(["constrained decoding", "on" if constrained else "off",
                     "the answer space is enforced by a grammar (labels, numbers or the JSON schema), as measured"
                     if constrained else "measured free: a constraint would change the numbers; re-measure with "
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


def _run_for_limits(manifest: Manifest) -> tuple[EvalRun | None, str]:
    """The eval run that describes the shipped model best: the recommended rung's, else the gate's tuned run."""
    rec = recommended_rung(manifest)
    candidates = [(rung_value(rec, "eval_run_dir"), f"the {rec.quant} rung's eval run"),
                  ((manifest.gate.get("tuned") or {}).get("eval_run_dir"), "the gate's tuned eval run")]
    for run_dir, what in candidates:
        if run_dir and (Path(run_dir) / "items.jsonl").is_file():
            run = read_eval_run(run_dir)
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
        conf = dr.confusion(task, run.first)
        if conf is not None:
            for true, pred, count, total in dr.top_confusions(conf):
                did = "gives no valid answer on" if pred == INVALID else f"answers `{pred}` on"
                out.append(f"- It {did} {count} of {total} `{true}` items ({what}).")
        for cause, recs in dr.failures_by_cause(run.first).items():
            out.append(f"- {cause}: {len(recs)} of {len(run.first)} test items ({what}).")
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


def rung_value(rung: Any, key: str) -> Any:
    """A rung's measurement (None where export did not measure it)."""
    return rung.metrics.get(key)


def recommended_rung(manifest: Any) -> Any:
    """The manifest's recommended rung (a clear error when `recommended` names no rung)."""
    for rung in manifest.rungs:
        if rung.quant.upper() == manifest.recommended.upper():
            return rung
    raise UserError(f"manifest: recommended = {manifest.recommended!r} but the rungs are "
                    f"{', '.join(r.quant for r in manifest.rungs) or 'none'}")

"""The package's documents for people: `usage.md` and `benchmarks.md`.

Both are pure functions of their inputs plus files inside the package and the eval run folders that gate.json
and the ladder name: nothing is re-run, and every number says where it comes from (gate.json, the ladder that
`honed export` measured, or an eval run id), so a reader can check it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from honed.errors import UserError
from honed.export import docs_runs as dr
from honed.export.docs_examples import curl_example, ollama_example, python_example, read_chat_template
from honed.export.docs_md import fence, fmt, fmt_ci, recommended_rung, table
from honed.export.docs_usage import hardware_section, limitations_section, retrain_section, sampling_section
from honed.export.package import ANCHORS, TASK_DIR, Anchor, Manifest, Package
from honed.task.data import Item, load_items
from honed.task.prompt import build_answer, build_messages
from honed.task.spec import Task, load_task

BASE_URL = "http://127.0.0.1:8080"
CAUSES = {
    "error": "the backend returned an error (e.g. the prompt did not fit the context)",
    "empty_after_thinking": "it thought and then gave no answer",
    "cut_at_max_tokens": "the answer was cut at the token budget before it was complete",
    "refused": "it refused to answer",
    "unparseable": "no answer could be read from the output",
    "schema_invalid": "JSON that does not satisfy the task's schema",
    "wrong_answer": "a well-formed answer that is wrong",
}


def _inputs_text(inputs: dict[str, Any], limit: int = 400) -> str:
    text = json.dumps(inputs, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------------------------------- benchmarks.md


def render_benchmarks(pkg_root: Path, manifest: Manifest, gate: dict[str, Any], ladder: dict[str, Any]) -> str:
    """benchmarks.md: base vs tuned with CIs, the quant ladder and its recommendation, the confusion matrix (or
    what stands in for it), five before/after examples, and the failures the tuned model still makes."""
    _check_gate(gate)
    task = load_task(Path(pkg_root) / TASK_DIR, prompt=manifest.prompt)
    items = {i.id: i for i in load_items(task, "test")}
    base, tuned = dr.read_run(gate["base"]["eval_run_dir"]), dr.read_run(gate["tuned"]["eval_run_dir"])
    metric = gate["primary_metric"]
    out = [f"# Benchmarks: {manifest.task} {manifest.version}", "",
           f"A `{task.kind}` task, measured on its locked test set (`task/data/test.jsonl`, {gate['n_items']} items)"
           f" with the primary metric `{metric}`. Sources: `gate.json` (written by `honed gate` on "
           f"{gate.get('created', 'n/a')}), the quantization ladder (re-evaluated by `honed export`), and eval run "
           "ids (folders under `$HONED_HOME/runs/`).", ""]
    out += _gate_section(gate, manifest, base, tuned)
    out += _ladder_section(ladder, metric)
    out += _matrix_section(task, items, base, tuned)
    out += _examples_section(task, items, base, tuned)
    out += _failures_section(task, tuned)
    return "\n".join(out).rstrip() + "\n"


GATE_KEYS = ("status", "primary_metric", "n_items", "base.model", "base.value", "base.eval_run_dir", "tuned.model",
             "tuned.value", "tuned.eval_run_dir")


def _check_gate(gate: dict[str, Any]) -> None:
    """Every gate.json key the document reads, all missing ones named at once (a bug upstream, said plainly)."""
    missing = []
    for key in GATE_KEYS:
        node: Any = gate
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            missing.append(key)
    if missing:
        raise UserError(f"gate.json lacks {', '.join(missing)}: re-run `honed gate RUN` (benchmarks.md reads them)")


def _gate_section(gate: dict[str, Any], manifest: Manifest, base: dr.EvalRun, tuned: dr.EvalRun) -> list[str]:
    metric = gate["primary_metric"]
    forced = " — exported anyway (`--force`): this model did NOT pass its gate" if manifest.gate.get("forced") \
        else ""
    b, t = gate["base"], gate["tuned"]
    out = [f"## Base vs tuned (gate: {gate['status']}{forced})", "",
           table(["model", metric, "95% CI", "p95 latency (ms)", "eval run"],
                 [[f"base `{b['model']}`", fmt(b["value"]), fmt_ci(b.get("ci")), fmt(b.get("p95_ms"), 1),
                   f"`{base.run_id}`"],
                  [f"tuned `{t['model']}` + adapter", fmt(t["value"]), fmt_ci(t.get("ci")), fmt(t.get("p95_ms"), 1),
                   f"`{tuned.run_id}`"]]), "",
           f"- difference (tuned − base): {fmt(gate.get('difference'))}, paired 95% CI "
           f"{fmt_ci(gate.get('difference_ci'))}, p = {fmt(gate.get('p_value'), 4)}",
           f"- relative improvement: {fmt(gate.get('relative_improvement'))}, 95% CI "
           f"{fmt_ci(gate.get('relative_improvement_ci'))} (required: {fmt(gate.get('min_relative_improvement'))})",
           f"- threshold: {metric} ≥ {fmt(gate.get('threshold'))} (the higher of base × (1 + "
           f"{fmt(gate.get('min_relative_improvement'))}) and the task's own bar `[acceptance] min_value` = "
           f"{fmt(gate.get('min_value')) if gate.get('min_value') is not None else 'not set'}); it is the "
           "package's acceptance minimum",
           "", f"Source: gate.json. Backends (the eval runs' result.json): base `{base.backend}`, tuned "
           f"`{tuned.backend}`" + (", so the pair differs only by the adapter" if base.backend == tuned.backend
                                   else "") + "; serving latencies are the ladder's.", ""]
    checks = gate.get("checks") or []
    if checks:
        out += [table(["check", "passed", "detail"],
                      [[c["name"], "yes" if c["passed"] else "**no**", c.get("detail", "")] for c in checks]),
                "", "Source: gate.json `checks`.", ""]
    return out


def _ladder_section(ladder: dict[str, Any], metric: str) -> list[str]:
    rows = [[r["quant"], f"`{r['file']}`", fmt(r.get("metric")), fmt_ci(r.get("ci")), fmt(r.get("p50_ms"), 1),
             fmt(r.get("p95_ms"), 1), fmt(r.get("peak_memory_mb"), 0), fmt(r.get("cost_per_1k"), 4),
             fmt(r.get("agreement_with_merged")), f"`{Path(r['eval_run_dir']).name}`" if r.get("eval_run_dir")
             else "n/a"] for r in ladder.get("rungs", [])]
    return ["## Quantization ladder", "",
            table(["quant", "file", metric, "95% CI", "p50 ms", "p95 ms", "peak memory MB", "cost per 1K $",
                   "agreement with merged", "eval run"], rows), "",
            f"**Recommended: {ladder.get('recommended')}** — the smallest quantization whose {metric} stays within "
            f"the gate's tolerance ({fmt(ladder.get('tolerance'))}) of F16. {ladder.get('why', '')}".rstrip(), "",
            "Source: the ladder `honed export` measured (each rung re-evaluated on the locked test set, greedy); "
            "agreement = share of items whose answer equals the merged model's.", ""]


def _matrix_table(conf: dict[str, Any]) -> str:
    return table(["true ↓ / answered →", *conf["columns"]],
                 [[label, *row] for label, row in zip(conf["labels"], conf["matrix"], strict=True)])


def _matrix_section(task: Task, items: dict[str, Item], base: dr.EvalRun, tuned: dr.EvalRun) -> list[str]:
    if task.kind in ("classify", "pick"):
        out = ["## Confusion matrix", ""]
        if task.kind == "pick":
            out += ["Rows are the true outcome (NONE: no candidate fits; PICK: one does), columns what the model "
                    "did: NONE, PICK (the right number, or any number where NONE was right: a false pick), "
                    "WRONG_PICK, INVALID (no answer).", ""]
        for name, run in (("tuned", tuned), ("base", base)):
            conf = dr.confusion(task, run.records)
            assert conf is not None
            out += [f"### {name} (eval run `{run.run_id}`)", "", _matrix_table(conf), ""]
        out += ["Source: `items.jsonl` of each eval run, counted with the same scorer as `honed eval`.", ""]
        return out
    what = ("answers are JSON objects, not classes: shown instead, the JSON validity rates and per-field "
            "precision/recall/F1" if task.kind == "extract" else
            "answers are free text, not classes: shown instead, the pass rate of each format rule")
    out = ["## Field and rule scores (instead of a confusion matrix)", "",
           f"No confusion matrix for a `{task.kind}` task ({what}), base vs tuned.", ""]
    bd, td = dr.kind_detail(task, base.records, items), dr.kind_detail(task, tuned.records, items)
    out += [table(["metric", "base", "tuned"], [[k, fmt(v), fmt(td["rates"].get(k))] for k, v in bd["rates"].items()]),
            ""]
    if task.kind == "extract":
        fields = sorted(set(bd["per_field"]) | set(td["per_field"]))
        out += [table(["field", "base F1", "tuned F1", "tuned precision", "tuned recall", "support"],
                      [[f"`{f or '(root)'}`", fmt(bd["per_field"].get(f, {}).get("f1")),
                        fmt(td["per_field"].get(f, {}).get("f1")), fmt(td["per_field"].get(f, {}).get("precision")),
                        fmt(td["per_field"].get(f, {}).get("recall")), fmt(td["per_field"].get(f, {}).get("support"))]
                       for f in fields]), ""]
    else:
        rules = list(td["per_rule"])
        out += [table(["format rule", "base pass rate", "tuned pass rate"],
                      [[r, fmt(bd["per_rule"].get(r)), fmt(td["per_rule"].get(r))] for r in rules]), ""]
    out += [f"Source: `items.jsonl` of eval runs `{base.run_id}` (base) and `{tuned.run_id}` (tuned).", ""]
    return out


def _examples_section(task: Task, items: dict[str, Item], base: dr.EvalRun, tuned: dr.EvalRun) -> list[str]:
    pairs = dr.before_after(base, tuned)
    n_fixed = sum(p.change == "fixed" for p in pairs)
    out = ["## Before and after", "",
           f"Items the tuned model fixed ({n_fixed} shown), topped up with items whose wrong answer changed, and one it "
           f"broke if any. Base: eval run `{base.run_id}`; tuned: eval run `{tuned.run_id}`.", ""]
    if not pairs:
        return out + ["The base and tuned models gave the same answer on every test item.", ""]
    for n, p in enumerate(pairs, 1):
        item = items.get(p.id)
        out += [f"### {n}. `{p.id}` — {p.change}", "",
                f"- input: `{_inputs_text(item.inputs) if item else '(not in the package test set)'}`",
                f"- expected: `{build_answer(task, p.tuned.expected)}`",
                f"- base: `{dr.answer_text(p.base)}`" + ("" if p.base.correct else f" ({p.base.cause})"),
                f"- tuned: `{dr.answer_text(p.tuned)}`" + ("" if p.tuned.correct else f" ({p.tuned.cause})"), ""]
    return out


def _failures_section(task: Task, tuned: dr.EvalRun) -> list[str]:
    groups = dr.failures_by_cause(tuned.records)
    n_wrong = sum(len(v) for v in groups.values())
    out = ["## Failures it still makes", "",
           f"{n_wrong} of {len(tuned.records)} test items are still wrong for the tuned model (eval run "
           f"`{tuned.run_id}`), by cause:", ""]
    if not groups:
        return out + ["None: every test item is right.", ""]
    for cause, recs in groups.items():
        out += [f"### {cause}: {len(recs)} — {CAUSES.get(cause, '')}", ""]
        if cause == "wrong_answer" and task.kind in ("classify", "pick"):
            out += [f"- expected `{e}`, answered `{a}`: {c}×" for (e, a), c in dr.wrong_pairs(recs).most_common(5)]
        else:
            out += [f"- `{r.id}`: expected `{dr.cut(build_answer(task, r.expected), 120)}`, got "
                    f"`{dr.answer_text(r, 120)}`" for r in recs[:3]]
        out.append("")
    return out


# -------------------------------------------------------------------------------------------------- usage.md


def example_items(pkg: Package, task: Task, n: int = 3) -> list[Anchor]:
    """Three test items to show, from the anchors (which carry what the shipped rung answered) when present;
    different expected answers first, so the examples cover more than one class."""
    anchors = pkg.anchors() if (pkg.root / ANCHORS).is_file() else []
    if len(anchors) < n:  # topped up from the test set, without a recorded answer
        have = {a.id for a in anchors}
        anchors += [Anchor(i.id, i.inputs, i.expected, None) for i in load_items(task, "test") if i.id not in have]
    seen: set[str] = set()
    first, rest = [], []
    for a in anchors:
        key = json.dumps(a.expected, sort_keys=True, default=str)
        (rest if key in seen else first).append(a)
        seen.add(key)
    return (first + rest)[:n]


def _expected_text(task: Task, expected: Any) -> str:
    if expected is None:  # generate items may have no reference: the format rules judge them
        return "none recorded (the format rules in `task/honed.toml` judge the output)"
    return f"`{build_answer(task, expected)}`"


def render_usage(pkg_root: Path, manifest: Manifest, task: Task) -> str:
    """usage.md: what it does and does not, the prompt format with three real copy-paste examples, sampling
    settings and why, hardware needs, known limitations, how to retrain."""
    pkg = Package(Path(pkg_root), manifest)
    rec = recommended_rung(manifest)
    gguf = pkg.root / rec.file
    tpl = read_chat_template(gguf)
    ollama_model = str((manifest.model_extra or {}).get("ollama_model") or f"{manifest.task}:{manifest.version}")
    ollama_model = ollama_model.lower()
    out = [f"# {manifest.task} {manifest.version}: usage", "",
           f"A fine-tune of `{manifest.base_model.get('name')}` for one `{task.kind}` task, shipped as GGUF files "
           f"(recommended: `{rec.file}`, {rec.quant}), the unmerged adapter (`adapter/`), an Ollama `Modelfile`, "
           "the task (`task/`) and its locked test set. `benchmarks.md` has the measurements; `honed verify .` "
           "re-checks every file's sha256 and re-runs the anchor items.", ""]
    out += _does_section(task, manifest)
    out += _prompt_section(task, tpl, manifest)
    out += _examples_usage(pkg, task, tpl, rec.file, ollama_model)
    out += sampling_section(task, tpl.template is not None)
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
    if tpl.template:
        checked = (manifest.model_extra or {}).get("round_trip")
        out += ["The model's own chat template (stored in the GGUF) turns the messages into the text below; "
                "llama.cpp servers apply it themselves, and the Ollama Modelfile carries the same template"
                + (" (export's round-trip check, manifest.json `round_trip`)." if checked else
                   " (check it: this manifest records no round-trip check)."), ""]
    else:
        out += ["The model has no chat template (a base model): the prompt is plain text ending in `Answer:`, sent "
                "to the completion endpoint, and the answer ends at a blank line.", ""]
    return out


def _examples_usage(pkg: Package, task: Task, tpl: Any, gguf_file: str, ollama_model: str) -> list[str]:
    examples = example_items(pkg, task)
    out = ["## Examples", "",
           "Start a server on the recommended file first, in this folder (any one of):", "", "```sh",
           f"ollama create {ollama_model} -f Modelfile",
           f"llama-server -m {gguf_file} --port 8080",
           f"python -m llama_cpp.server --model {gguf_file} --port 8080",
           "honed serve .   # the OpenAI-compatible endpoint with validation; use the URL it prints",
           "```", ""]
    forms = [("`ollama run`", "sh", lambda a: ollama_example(task, a.inputs, tpl, ollama_model)),
             ("`curl` to the OpenAI-compatible server", "sh",
              lambda a: curl_example(task, a.inputs, tpl, gguf_file, BASE_URL)),
             ("Python, `openai` client", "python",
              lambda a: python_example(task, a.inputs, tpl, gguf_file, BASE_URL, a.expected))]
    for n, (anchor, (how, lang, make)) in enumerate(zip(examples, forms, strict=False), 1):
        prompt = tpl.render(build_messages(task, anchor.inputs))
        answered = (f" The recommended rung answered `{build_answer(task, anchor.answer)}` at export "
                    "(anchors.jsonl)." if anchor.answer is not None else "")
        out += [f"### Example {n}: test item `{anchor.id}`, {how}", "",
                "The exact prompt the model is served:", "", fence(prompt, "text"), "",
                fence(make(anchor), lang), "",
                f"Expected answer: {_expected_text(task, anchor.expected)}.{answered}", ""]
        if how == "`ollama run`" and task.prompt_system and tpl.template:
            out[-1:-1] = ["`ollama run` sends only the user message: the task's system message must be the "
                          "Modelfile's SYSTEM for Ollama to see the prompt above.", ""]
    return out

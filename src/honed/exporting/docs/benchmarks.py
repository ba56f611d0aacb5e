"""benchmarks.md: base vs tuned, the quantization ladder, the confusion matrix, before/after, failures.

Every number says where it comes from (gate.json, the ladder `honed export` measured, or an eval run id), so a
reader can check it; nothing is re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from honed.display import fmt, fmt_ci
from honed.errors import UserError
from honed.evaluate.document import EvalRun, read_eval_run
from honed.exporting.docs import runs as dr
from honed.exporting.docs.markdown import table
from honed.exporting.package import TASK_DIR, Manifest
from honed.task.data import Item, load_items
from honed.task.prompt import build_answer
from honed.task.spec import Task, load_task

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


def render_benchmarks(pkg_root: Path, manifest: Manifest, gate: dict[str, Any], ladder: dict[str, Any]) -> str:
    """benchmarks.md: base vs tuned with CIs, the quant ladder and its recommendation, the confusion matrix (or
    what stands in for it), five before/after examples, and the failures the tuned model still makes."""
    _check_gate(gate)
    task = load_task(Path(pkg_root) / TASK_DIR, prompt=manifest.prompt)
    items = {i.id: i for i in load_items(task, "test")}
    base, tuned = read_eval_run(gate["base"]["eval_run_dir"]), read_eval_run(gate["tuned"]["eval_run_dir"])
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


def _gate_section(gate: dict[str, Any], manifest: Manifest, base: EvalRun, tuned: EvalRun) -> list[str]:
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


def _matrix_section(task: Task, items: dict[str, Item], base: EvalRun, tuned: EvalRun) -> list[str]:
    if task.kind in ("classify", "pick"):
        out = ["## Confusion matrix", ""]
        if task.kind == "pick":
            out += ["Rows are the true outcome (NONE: no candidate fits; PICK: one does), columns what the model "
                    "did: NONE, PICK (the right number, or any number where NONE was right: a false pick), "
                    "WRONG_PICK, INVALID (no answer).", ""]
        for name, run in (("tuned", tuned), ("base", base)):
            conf = dr.confusion(task, run.first)
            assert conf is not None
            out += [f"### {name} (eval run `{run.run_id}`)", "", _matrix_table(conf), ""]
        out += ["Source: `items.jsonl` of each eval run, counted with the same scorer as `honed eval`.", ""]
        return out
    what = ("answers are JSON objects, not classes: shown instead, the JSON validity rates and per-field "
            "precision/recall/F1" if task.kind == "extract" else
            "answers are free text, not classes: shown instead, the pass rate of each format rule")
    out = ["## Field and rule scores (instead of a confusion matrix)", "",
           f"No confusion matrix for a `{task.kind}` task ({what}), base vs tuned.", ""]
    bd, td = dr.kind_detail(task, base.first, items), dr.kind_detail(task, tuned.first, items)
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


def _examples_section(task: Task, items: dict[str, Item], base: EvalRun, tuned: EvalRun) -> list[str]:
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


def _failures_section(task: Task, tuned: EvalRun) -> list[str]:
    groups = dr.failures_by_cause(tuned.first)
    n_wrong = sum(len(v) for v in groups.values())
    out = ["## Failures it still makes", "",
           f"{n_wrong} of {len(tuned.first)} test items are still wrong for the tuned model (eval run "
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

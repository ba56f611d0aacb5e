"""`honed demo`: the whole loop on the embedded model, on this machine, in about a quarter of an hour.

base eval (llama.cpp, the shipped GGUF) → tune (LoRA, guardrails) → gate (paired, on the locked test) → export
(merge → GGUF F16 → Q8_0 / Q4_K_M, every rung re-evaluated, template round trip, package) → one HTML report.
Each stage is the same function the matching command runs; the demo only chooses a small budget and prints
where everything went. Nothing is skipped when a stage fails: a failing gate stops the demo before export, as
it would stop a real release, and says why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed.backends.models import DEFAULT_MODEL
from honed.errors import UserError
from honed.evaluate.document import RESULT_FILE, EvalDocument, read_eval_document
from honed.store import Store, write_text_atomic
from honed.train.summary import TuneSummary


def find_example(name: str = "classify") -> Path:
    """The bundled example task: ./examples/NAME, else next to the source checkout honed runs from."""
    here = Path.cwd() / "examples" / name
    if (here / "honed.toml").is_file():
        return here
    repo = Path(__file__).resolve().parents[2] / "examples" / name
    if (repo / "honed.toml").is_file():
        return repo
    raise UserError(f"example task {name!r} not found in ./examples or the honed checkout: pass --task DIR")


@dataclass
class DemoResult:
    base: EvalDocument
    tune: TuneSummary
    gate: dict[str, Any]
    package: Path | None
    ladder: dict[str, Any] | None
    report: Path
    seconds: dict[str, float] = field(default_factory=dict)


def _metric(doc: EvalDocument, metric: str) -> tuple[float | None, list[float] | None]:
    return doc.metric(metric), doc.ci.get(metric)


def report_html(res: DemoResult, metric: str, curves: dict[str, Any] | None) -> str:
    """One self-contained page: the metric at every step of the loop with its CI, the training curves, timings."""
    import plotly.graph_objects as go

    from honed.report.html import figure_div, page, sortable_table

    rows: list[tuple[str, float | None, list[float] | None, str]] = []
    value, ci = _metric(res.base, metric)
    rows.append(("base (GGUF, llama.cpp)", value, ci, res.base.run_id or ""))
    g = res.gate
    rows.append(("base (transformers, gate)", g["base"]["value"], g["base"].get("ci"), "gate.json"))
    rows.append(("tuned (transformers + adapter, gate)", g["tuned"]["value"], g["tuned"].get("ci"), "gate.json"))
    for rung in (res.ladder or {}).get("rungs", []):
        rows.append((f"tuned {rung['quant']} (GGUF, llama.cpp)", rung.get("metric"), rung.get("ci"),
                     Path(rung.get("eval_run_dir") or "").name))
    fig = go.Figure(go.Bar(
        x=[r[0] for r in rows], y=[r[1] or 0 for r in rows],
        error_y={"type": "data", "symmetric": False,
                 "array": [(r[2][1] - (r[1] or 0)) if r[2] else 0 for r in rows],
                 "arrayminus": [((r[1] or 0) - r[2][0]) if r[2] else 0 for r in rows]}))
    fig.update_layout(title=f"{metric} on the locked test (95% CI)", yaxis={"range": [0, 1]}, height=420)
    sections = [("Quality along the loop", figure_div(fig)),
                ("", sortable_table(["model", metric, "95% CI", "source"],
                                    [[r[0], "—" if r[1] is None else f"{r[1]:.3f}",
                                      "—" if not r[2] else f"[{r[2][0]:.3f}, {r[2][1]:.3f}]", r[3]] for r in rows]))]
    if curves:
        fc = go.Figure()
        fc.add_trace(go.Scatter(x=[p["step"] for p in curves["train"]], y=[p["loss"] for p in curves["train"]],
                                name="train loss"))
        fc.add_trace(go.Scatter(x=[p["step"] for p in curves["val"]], y=[p["metric"] for p in curves["val"]],
                                name=f"val {metric}", mode="lines+markers", yaxis="y2"))
        fc.update_layout(title="Training: the checkpoint is chosen by the val metric", height=380,
                         yaxis2={"overlaying": "y", "side": "right", "range": [0, 1]})
        if curves.get("best_step") is not None:
            fc.add_vline(x=curves["best_step"], line_dash="dash", line_color="green")
        sections.append(("Training curves", figure_div(fc)))
    checks = [[c["name"], "PASS" if c["passed"] else "FAIL", c.get("detail", "")] for c in g.get("checks", [])]
    sections.append((f"Gate: {g['status']}", sortable_table(["check", "result", "why"], checks)))
    sections.append(("Where the time went", sortable_table(
        ["stage", "seconds"], [[k, f"{v:.0f}"] for k, v in res.seconds.items()])))
    meta = (f"task {g.get('task')} · base {g['base'].get('model')} (sha256 {str(g['base'].get('model_sha256'))[:12]}…)"
            f" · package {res.package or 'not exported'}")
    return page("honed demo", meta, sections)


def _val_curve(tune: TuneSummary) -> list[dict[str, Any]]:
    """The run's validation passes (step, val metric, val loss), from its curves.json."""
    path = Path(tune.run_dir) / "curves.json"
    try:
        val = json.loads(path.read_text(encoding="utf-8")).get("val", [])
    except (OSError, json.JSONDecodeError, AttributeError):
        return []
    return [{"step": v["step"], "metric": v["metric"], "loss": v["loss"]} for v in val if isinstance(v, dict)]


def _all_metrics(doc: EvalDocument | None = None, run_dir: str | None = None) -> dict[str, Any]:
    """Every metric of an evaluation with its CI (an extraction's entity F1, relation F1, valid-JSON rate...),
    from its document or its run folder's result.json (none where the gate recorded no run folder)."""
    if doc is None:
        if not run_dir or not (Path(run_dir) / RESULT_FILE).is_file():
            return {}
        doc = read_eval_document(Path(run_dir) / RESULT_FILE)
    return {k: {"value": v, "ci": doc.ci.get(k)} for k, v in doc.metrics.items() if isinstance(v, int | float)}


def figures(res: DemoResult, metric: str) -> dict[str, Any]:
    """The run's figures for `honed demo --json`: per-stage seconds, each model's primary metric with its CI,
    the gate, the recommended rung and the training throughput. Everything is read from the stage documents."""
    g = res.gate
    rungs = (res.ladder or {}).get("rungs", [])
    value, ci = _metric(res.base, metric)
    tune = res.tune
    return {
        "task": g.get("task"), "primary_metric": metric, "n_test_items": g.get("n_items"),
        "seconds": {**{k: round(v, 1) for k, v in res.seconds.items()}, "total": round(sum(res.seconds.values()), 1)},
        "base_gguf": {"value": value, "ci": ci, "run_id": res.base.run_id,
                      "model_sha256": res.base.model.sha256, "metrics": _all_metrics(res.base)},
        "base": {"value": g["base"]["value"], "ci": g["base"].get("ci"),
                 "metrics": _all_metrics(run_dir=g["base"].get("eval_run_dir"))},
        "tuned": {"value": g["tuned"]["value"], "ci": g["tuned"].get("ci"),
                  "metrics": _all_metrics(run_dir=g["tuned"].get("eval_run_dir"))},
        "constrained": g.get("constrained"),
        "difference_ci": g.get("difference_ci"),
        "gate": {"status": g["status"], "threshold": g.get("threshold"), "min_value": g.get("min_value"),
                 "failed": [c["name"] for c in g.get("checks", []) if not c["passed"]]},
        "rungs": {r["quant"]: {"value": r.get("metric"), "ci": r.get("ci"), "p95_ms": r.get("p95_ms"),
                               "metrics": _all_metrics(run_dir=r.get("eval_run_dir"))} for r in rungs},
        "recommended": (res.ladder or {}).get("recommended"),
        "shipped": next(({"quant": r["quant"], "value": r.get("metric"), "ci": r.get("ci")} for r in rungs
                         if r["quant"] == (res.ladder or {}).get("recommended")), None),
        "training": {"steps": tune.steps, "seconds": tune.train_seconds,
                     "tokens_per_s": tune.train_tokens_per_s,
                     "step_tokens_per_s": tune.step_tokens_per_s, "prompt": tune.prompt,
                     "best_step": tune.selection.best_step,
                     "plan": tune.plan, "run_id": tune.run_id, "curve": _val_curve(tune)},
        "package": str(res.package) if res.package else None,
        "report": str(res.report),
    }


def demo(*, task_dir: Path | None = None, model: str = DEFAULT_MODEL, out: Path = Path("demo-out"),
         time_budget: float | None = 480.0, max_steps: int | None = None, eval_every: int | None = None,
         quants: tuple[str, ...] = ("Q8_0", "Q4_K_M"), say: Callable[[str], None] = print,
         store: Store | None = None) -> DemoResult:
    """Run the loop; returns what each stage produced (the report is written either way)."""
    from honed.backends import open_backend
    from honed.evaluate.runner import evaluate
    from honed.exporting.export import export
    from honed.gating import gate
    from honed.task.spec import load_task
    from honed.train.config import TuneConfig
    from honed.train.sft import tune

    store = store or Store()
    task = load_task(task_dir or find_example())
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    metric = task.primary_metric

    t0 = time.perf_counter()
    say(f"1/4 evaluating the base model {model} on the locked test of {task.name} (llama.cpp)")
    backend = open_backend("llamacpp", model)
    try:
        ev = evaluate(task, backend, split="test", store=store, progress=True)
        base = ev.document
    finally:
        backend.close()
    seconds["base eval"] = time.perf_counter() - t0
    say(f"    base {metric} = {base.metrics.get(metric):.3f}")

    t0 = time.perf_counter()
    budget = f"{time_budget:.0f} s of training" if time_budget else f"{max_steps} steps"
    say(f"2/4 fine-tuning a LoRA adapter ({budget} at most; the val {metric} picks the checkpoint)")
    # tune's own defaults: every val item (a pass is ~10 s now that answers are constrained), patience 4 (with
    # 24 items and patience 3 a noisy val stopped a run at step 90 of 125, its learning rate still at 28%: 0.800)
    cfg = TuneConfig(model=model, max_steps=max_steps, eval_every=eval_every, time_budget=time_budget)
    summary = tune(task, cfg, store=store)
    seconds["tune"] = time.perf_counter() - t0
    run = Path(summary.run_dir)
    say(f"    {summary.steps} steps in {summary.train_seconds:.0f} s ({summary.step_tokens_per_s} tok/s "
        "in the steps, "
        f"prompt: {summary.prompt}); {summary.selection.why}")

    t0 = time.perf_counter()
    say("3/4 gating: tuned vs base on the locked test, paired")
    g = gate(run, store=store, progress=True)
    seconds["gate"] = time.perf_counter() - t0
    for c in g.document.checks:
        say(f"    {'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}")

    package, ladder = None, None
    if g.passed:
        t0 = time.perf_counter()
        say(f"4/4 exporting: merge → GGUF F16 → {', '.join(quants)}, every rung re-evaluated")
        pkg = export(run, out=out / "package", quants=list(quants), on_stage=lambda m: say(f"    {m}"))
        seconds["export"] = time.perf_counter() - t0
        package = pkg.root
        ladder_path = package / "ladder.json"
        ladder = json.loads(ladder_path.read_text()) if ladder_path.is_file() else None
    else:
        say("    the gate failed: no export (that is the gate doing its job; see the reasons above)")
    curves_path = run / "curves.json"
    curves = json.loads(curves_path.read_text()) if curves_path.is_file() else None
    res = DemoResult(base=base, tune=summary, gate=g.doc, package=package, ladder=ladder,
                     report=out / "report.html", seconds=seconds)
    write_text_atomic(res.report, report_html(res, metric, curves))
    return res

"""`gate(run)`: the tuned model against its base on the locked test, paired, and the verdict in `RUN/gate.json`.

Both sides run through the `transformers` backend on the same dequantized base weights, the tuned side with the
run's adapter (`RUN/best/`): the pair differs only by the adapter, so a difference is the fine-tune's doing.
Evaluations go through `honed.evaluate.runner.evaluate` (normal eval run folders, responses cached); a re-run on
unchanged inputs reuses them without loading a model (`honed.gating.cache`). See `honed.gating.checks` for the rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from honed.errors import UserError
from honed.evaluate.runner import EvalResult
from honed.evaluate.scoring import ItemRecord, item_keywords, metric_names, metric_on
from honed.gating import cache, checks
from honed.gating.arm import compare_arm, load_arm
from honed.gating.cache import Side
from honed.gating.document import GATE_FILE, GateDocument
from honed.gating.forgetting import load_general_check, reference_nll
from honed.store import Store, write_json_atomic
from honed.task.data import Item, items_hash
from honed.task.spec import Task

BACKEND = "transformers"


@dataclass
class GateResult:
    """The verdict (`document`, typed) and the gate.json it was written to."""

    document: GateDocument
    path: Path

    @property
    def doc(self) -> dict[str, Any]:
        """gate.json's JSON object."""
        return self.document.as_json()

    @property
    def status(self) -> str:
        return self.document.status

    @property
    def passed(self) -> bool:
        return self.document.passed

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        return [c.model_dump(exclude_unset=True) for c in self.document.failed_checks]


def read_tune_run(run: Path) -> tuple[dict[str, Any], Task, Path]:
    """(manifest, task, adapter folder) of a tune run folder, or a UserError saying what is missing."""
    from honed.task.spec import load_task

    mpath = run / "manifest.json"
    if not mpath.is_file():
        raise UserError(f"{run}: not a tune run folder (no manifest.json); give the folder or id `honed tune` "
                        "printed (`honed runs` lists them)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{mpath}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    missing = [k for k in ("task_dir", "base_model") if k not in manifest]
    if missing or not isinstance(manifest.get("base_model"), dict) or "name" not in manifest["base_model"]:
        raise UserError(f"{mpath}: not a tune manifest (expected keys task_dir and base_model{{name, path, "
                        f"sha256}}; missing: {', '.join(missing) or 'base_model.name'})")
    from honed.train.status import unfinished_reason

    why = unfinished_reason(run)  # a killed run's best/ is whatever its last validation pass left: never ship it
    if why:
        raise UserError(f"{run}: the tune run {why}; gate and export take a finished run: continue it with "
                        f"`honed tune --resume {run}`")
    task_dir = Path(manifest["task_dir"])
    if not task_dir.exists():
        raise UserError(f"{mpath}: task_dir {task_dir} does not exist any more (gate and export need the task "
                        "and its locked test split)")
    adapter = run / "best"
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{run}: no adapter in best/ (no validation pass improved on anything, or tune did not "
                        "finish one); re-run `honed tune`")
    # the tuned model is served with the template it was trained on (a task's short `tuned_template`, or the base)
    return manifest, load_task(task_dir, prompt=manifest.get("prompt", "base")), adapter


def _model_ref(base: dict[str, Any]) -> str:
    """The file tune trained on, where it still exists; else the alias (resolved again)."""
    path = base.get("path")
    return str(path) if path and Path(path).exists() else str(base["name"])


def _evaluate_side(task: Task, model: str, adapter: Path | None, items: list[Item], store: Store,
                   progress: bool) -> Side:
    from honed.backends import open_backend
    from honed.evaluate.runner import evaluate

    opts: dict[str, Any] = {"adapter": str(adapter)} if adapter else {}
    with open_backend(BACKEND, model, **opts) as be:
        result = evaluate(task, be, "test", items=items, store=store, progress=progress)
        nll = reference_nll(be, load_general_check())
        return Side(result, nll, be.info.details.get("base_sha256"))


def _labels(records: list[ItemRecord]) -> list[str]:
    """Each answer as a label for the collapse count; outputs that were no answer at all count as one."""
    return [(r.answer if isinstance(r.answer, str) else json.dumps(r.answer, sort_keys=True))
            if r.cause in (None, "wrong_answer") else checks.INVALID for r in records]


def _ci(result: EvalResult, stat: checks.Statistic, n: int, metric: str, n_resamples: int) -> list[float]:
    ci = result.document.ci.get(metric)
    if ci is not None:
        return list(ci)
    from honed.evaluate import stats

    return list(stats.bootstrap_ci(stat, n, n_resamples=n_resamples))


def _not_a_metric(task: Task, name: str, known: set[str]) -> UserError:
    """The error for an `[acceptance]` metric the task's results do not give (a misspelling, another kind's)."""
    key = "primary_metric" if name == task.primary_metric else "min_metrics names"
    return UserError(f"{task.source}: [acceptance] {key} {name!r} is not a metric of a {task.kind} task's results "
                     f"here; this one reports {', '.join(sorted(known))}")


def gate(run: Path, *, vs: Path | None = None, limit: int | None = None, store: Store | None = None,
         progress: bool = False, on_stage: Callable[[str], None] | None = None, n_resamples: int = 2000,
         seed: int = 0) -> GateResult:
    """Gate a tune run: evaluate base and tuned on the locked test, run every check, write `RUN/gate.json`.

    `vs`: an eval or bake-off arm run folder on the same test items, compared pair by pair (it fails the gate
    only when that arm is significantly better). `limit`: only the first N test items (quick looks; the verdict
    on a few items is honest but weak: the CI says how weak; `limited: true` in gate.json, and export refuses it).

    gate.json records what it gated — `adapter_sha256` (best/ as evaluated), `test_items_sha256` and `n_test` (the
    full locked test), `limited` — so `honed export` can refuse a verdict that is not about the run it exports.
    """
    from honed.task.data import load_items
    from honed.train.validate import expected_top_share

    say = on_stage or (lambda _msg: None)
    run = Path(run)
    manifest, task, adapter = read_tune_run(run)
    all_items = load_items(task, "test")  # verifies the test lock: a gate on an edited test set is no gate
    items = all_items[:limit] if limit is not None else all_items
    if not items:
        raise UserError(f"{task.split_path('test')}: the test split is empty: nothing to gate on")
    arm = load_arm(Path(vs), task, items) if vs is not None else None  # before the slow part: fail fast
    acc = task.spec.acceptance
    metric = task.primary_metric
    known = metric_names(task, items[0])  # a misspelt bar is refused before minutes of evaluation, not after
    for name in [metric, *acc.min_metrics]:
        if name not in known:
            raise _not_a_metric(task, name, known)
    base_info = manifest["base_model"]
    model = _model_ref(base_info)

    model_sha = cache.model_sha256(model)
    # tune hashes a GGUF the way the backend does (the file); HF folders are hashed differently there
    if base_info.get("from_gguf") and base_info.get("sha256") and model_sha != base_info["sha256"]:
        raise UserError(f"{model}: sha256 {model_sha} but the run was trained on {base_info['sha256']}: the base "
                        "model changed since `honed tune`")
    key = cache.fingerprint(task, model_sha, adapter, items)
    hit = cache.load(run, key, items)
    if hit is not None:
        say(f"same models, adapter, items and settings as before: reusing the evaluations in {cache.CACHE_FILE}")
        base, tuned = hit
    else:
        own_store = store is None
        store = store or Store()
        try:
            say(f"evaluating the base model {base_info['name']} on {len(items)} test items")
            # the base is prompted as a user would prompt it (the full template); the tuned model as it was trained
            base = _evaluate_side(task.with_prompt("base"), model, None, items, store, progress)
            say(f"evaluating the tuned model (adapter {adapter})")
            tuned = _evaluate_side(task, model, adapter, items, store, progress)
        finally:
            if own_store:
                store.close()
        cache.save(run, key, base, tuned)

    rb, rt = base.result.records, tuned.result.records
    assert [r.id for r in rb] == [r.id for r in rt] == [i.id for i in items]  # same items, same order
    kws = [item_keywords(task, i.inputs) for i in items]
    stat_b, stat_t = metric_on(task, rb, kws, metric), metric_on(task, rt, kws, metric)
    say("paired bootstrap")
    imp = checks.paired_improvement(stat_b, stat_t, len(items), n_resamples=n_resamples, seed=seed)
    scores = {k: float(v) for k, v in tuned.result.document.metrics.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)}
    if math.isnan(imp["base"]) or math.isnan(imp["tuned"]):  # named, but undefined on these items
        raise _not_a_metric(task, metric, set(scores))
    gate_checks = [
        checks.improvement_check(imp, metric, acc.min_relative_improvement),
        checks.forgetting_check(base.nll["mean_nll"], tuned.nll["mean_nll"], acc.max_forgetting,
                                tuned.nll["n_prompts"]),
        checks.collapse_check(_labels(rt), expected_top_share(task, items), acc.collapse_share),
        checks.latency_check(tuned.result.document.latency_ms.p95, acc.max_p95_latency_ms),
        checks.min_value_check(imp["tuned"], tuned.result.document.ci.get(metric), metric, acc.min_value),
    ]
    for name, bar in acc.min_metrics.items():
        if name not in scores:  # named, but undefined on these items
            raise _not_a_metric(task, name, set(scores))
        gate_checks.append(checks.min_metric_check(scores[name], tuned.result.document.ci.get(name), name, bar))
    vs_arm = None
    if arm is not None:
        vs_arm, arm_check = compare_arm(arm, task, items, rt, metric, n_resamples=n_resamples, seed=seed)
        gate_checks.append(arm_check)

    def side(s: Side, stat: checks.Statistic, value: float) -> dict[str, Any]:
        return {"value": value, "ci": _ci(s.result, stat, len(items), metric, n_resamples),
                "p95_ms": s.result.document.latency_ms.p95, "eval_run_dir": str(s.result.run_dir)}

    from honed.backends.transformers import adapter_sha256

    doc: dict[str, Any] = {
        "status": checks.verdict(gate_checks),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": manifest.get("run_id") or run.name,
        "task": task.name,
        "task_dir": str(task.root),
        "primary_metric": metric,
        "split": "test",
        "n_items": len(items),
        # what this verdict is about: export refuses it for another adapter, another test set or a partial look
        "n_test": len(all_items),
        "limited": len(items) < len(all_items),
        "test_items_sha256": items_hash(all_items),
        "adapter_sha256": adapter_sha256(adapter),
        "base": {"model": base_info["name"], "model_sha256": model_sha, **side(base, stat_b, imp["base"])},
        "tuned": {"model": base_info["name"], "adapter": str(adapter), **side(tuned, stat_t, imp["tuned"])},
        "relative_improvement": imp["relative_improvement"],
        "relative_improvement_ci": imp["relative_improvement_ci"],
        "difference": imp["difference"],
        "difference_ci": imp["difference_ci"],
        "p_value": imp["p_value"],
        "min_relative_improvement": acc.min_relative_improvement,
        "threshold": max(checks.threshold(imp["base"], acc.min_relative_improvement), acc.min_value or 0.0),
        "min_value": acc.min_value,
        "prompt": {"base": "base", "tuned": task.prompt},
        # how each side was decoded, as its evaluation recorded it (the task's constraint, or free for both)
        "constrained": {"base": base.result.document.constrained, "tuned": tuned.result.document.constrained},
        "checks": gate_checks,
        "vs_arm": vs_arm,
    }
    document = GateDocument.model_validate(doc)  # the writer checks its own document: a missing key fails here
    path = run / GATE_FILE
    write_json_atomic(path, document.as_json())
    return GateResult(document, path)

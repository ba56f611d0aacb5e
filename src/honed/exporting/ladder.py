"""The quant ladder: F16 → each quantization, every rung re-evaluated on the locked test, and the rung to ship
chosen by task score, not by habit.

Measured (../shared/DESIGN.md): Q4_K_M changed 1/16 answers of a tuned SmolLM2 and 4/16 of a tuned Qwen 0.5B,
Q8_0 none — on small models quantization loss is task-specific, so the export measures it. Each rung runs as
its own `honed eval` process (`honed.evaluate.bakeoff.run_arms`): its peak memory is its own, responses are
cached (a re-run export re-evaluates nothing), and the numbers live in normal eval run folders.

Agreement: on the anchor items, the share of a rung's greedy answers equal to the merged transformers model's
(the model before any GGUF conversion) — the conversion and quantization loss, item by item.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.display import fmt, fmt_ci
from honed.evaluate.scoring import ItemRecord
from honed.exporting.quantize import quantize
from honed.task.spec import ArmSpec, Task

RUNG_KEYS = ("quant", "file", "metric", "ci", "p50_ms", "p95_ms", "peak_memory_mb", "cost_per_1k",
             "agreement_with_merged", "eval_run_dir")


@dataclass(frozen=True)
class RungFile:
    quant: str
    path: Path
    size_mb: float


def build_rungs(f16: Path, quants: list[str], work: Path) -> list[RungFile]:
    """F16 plus one GGUF per quantization (llama.cpp's quantize API; rungs already built are kept)."""
    rungs = [RungFile("F16", f16, f16.stat().st_size / 2**20)]
    wanted = [q.upper() for q in quants if q.upper() != "F16"]
    try:  # llama.cpp prints a line per tensor on stderr while quantizing; the manifest keeps what matters
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:  # pragma: no cover - private helper moved
        from contextlib import nullcontext as suppress_stdout_stderr  # type: ignore[assignment]
    with suppress_stdout_stderr(disable=False):
        made = quantize(str(f16), wanted, work)
    for q in made:
        rungs.append(RungFile(q.quant, q.path, q.size_mb))
    return rungs


def _answer_key(r: ItemRecord) -> str:
    if r.answer is None:
        return "text:" + r.text.strip()
    return json.dumps(r.answer, sort_keys=True, ensure_ascii=False)


def agreement(records: list[ItemRecord], reference: list[ItemRecord]) -> tuple[int, int]:
    """(same answers, items compared) over the items both record lists hold."""
    ref = {r.id: _answer_key(r) for r in reference}
    pairs = [(_answer_key(r), ref[r.id]) for r in records if r.id in ref]
    return sum(a == b for a, b in pairs), len(pairs)


def choose_rung(rungs: list[dict[str, Any]], sizes: dict[str, float], tolerance: float,
                min_value: float | None = None, bars: dict[str, float] | None = None) -> tuple[str, str]:
    """(quant, why): the smallest rung whose primary metric is within `tolerance` (absolute) of F16's and, when
    F16 itself clears it, not below the acceptance `min_value`; nor below any of the task's other `bars`
    (`[acceptance] min_metrics`, each rung's values in its `bars`) that F16 clears."""
    f16 = next(r for r in rungs if r["quant"] == "F16")
    ref = f16["metric"] or 0.0
    floor = ref - tolerance - 1e-12
    use_min = min_value is not None and ref >= min_value
    def barred(r: dict[str, Any], m: str) -> float:
        return r.get("bars", {}).get(m) or 0.0

    held = {m: bar for m, bar in (bars or {}).items() if barred(f16, m) >= bar - 1e-12}
    rejected = []
    for r in sorted(rungs, key=lambda r: sizes[r["quant"]]):
        v = r["metric"] or 0.0
        if v < floor:
            rejected.append(f"{r['quant']} ({v:.3f}: more than {tolerance:g} below F16's {ref:.3f})")
            continue
        if use_min and v < min_value - 1e-12:  # type: ignore[operator]
            rejected.append(f"{r['quant']} ({v:.3f}: below the acceptance minimum {min_value:.3f})")
            continue
        below = [f"{m} {barred(r, m):.3f} below the task's bar {bar:.3f}" for m, bar in held.items()
                 if barred(r, m) < bar - 1e-12]
        if below:
            rejected.append(f"{r['quant']} ({', '.join(below)})")
            continue
        why = (f"{r['quant']} is the smallest rung ({sizes[r['quant']]:.0f} MiB) whose score ({v:.3f}) stays within "
               f"{tolerance:g} of F16's ({ref:.3f})" + (f" and above the acceptance minimum {min_value:.3f}"
                                                       if use_min else "")
               + (f", meeting the task's bars on {', '.join(held)}" if held else ""))
        if rejected:
            why += "; smaller rungs lost too much: " + ", ".join(rejected)
        return r["quant"], why
    return "F16", "no rung stays within tolerance of F16; F16 itself is shipped"  # pragma: no cover (F16 qualifies)


def measure_ladder(task: Task, rungs: list[RungFile], merged_dir: Path, n_anchors: int, *,
                   file_name: Callable[[str], str], tolerance: float, min_value: float | None,
                   on_stage: Callable[[str], None] = lambda _m: None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate every rung and the merged model; (ladder document, per-rung extras for the manifest).

    `file_name(quant)` is the rung's file name in the package."""
    from honed.cost import load_hardware, local_cost_per_1k
    from honed.evaluate.bakeoff import run_arms

    hw, _as_of = load_hardware(task.spec.bakeoff.hardware)
    on_stage(f"evaluating the merged transformers model on {n_anchors} anchor items")
    merged = run_arms(task, [ArmSpec(model=str(merged_dir), backend="transformers", label="merged")],
                      limit=n_anchors, quiet=True)[0]
    metric = task.primary_metric
    bars = task.spec.acceptance.min_metrics
    docs: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    for rung in rungs:
        on_stage(f"evaluating the {rung.quant} rung on the locked test")
        run = run_arms(task, [ArmSpec(model=str(rung.path), label=rung.quant)], quiet=True)[0]
        d = run.document
        same, n = agreement(run.records, merged.records)
        mean_s = (d.latency_ms.mean or 0) / 1000
        docs.append({
            "quant": rung.quant, "file": file_name(rung.quant), "metric": d.metrics.get(metric),
            "ci": d.ci.get(metric), "p50_ms": d.latency_ms.p50, "p95_ms": d.latency_ms.p95,
            "peak_memory_mb": d.peak_memory_mb,
            "cost_per_1k": round(local_cost_per_1k(hw, mean_s), 6) if mean_s > 0 else None,
            "agreement_with_merged": round(same / n, 4) if n else None, "eval_run_dir": str(run.run_dir),
            **({"bars": {m: d.metrics.get(m) for m in bars}} if bars else {}),
        })
        extras[rung.quant] = {"size_mb": round(rung.size_mb, 1), "agreement": {"same": same, "of": n},
                              "hardware": task.spec.bakeoff.hardware, "n_items": d.n_items,
                              "failures": d.failures}
    sizes = {r.quant: r.size_mb for r in rungs}
    recommended, why = choose_rung(docs, sizes, tolerance, min_value, bars)
    ladder = {"rungs": docs, "recommended": recommended, "why": why, "tolerance": tolerance}
    extras["merged"] = {"eval_run_dir": str(merged.run_dir), "n_items": merged.document.n_items,
                        "metric": merged.document.metrics.get(metric)}
    return ladder, extras


def ladder_markdown(ladder: dict[str, Any], metric: str) -> str:
    """The ladder table (seed 000's: metric, P50, P95, memory, cost/1K per rung); "—" where nothing was measured."""
    def f(v: Any, nd: int = 3) -> str:
        return fmt(v, nd, missing="—")

    barred = list(ladder["rungs"][0].get("bars", {})) if ladder["rungs"] else []  # the task's min_metrics
    lines = [f"| rung | {metric} | 95% CI | " + "".join(f"{m} | " for m in barred)
             + "P50 ms | P95 ms | peak MB | $/1K | agrees with merged |", "|---" * (8 + len(barred)) + "|"]
    for r in ladder["rungs"]:
        ci, agree = r["ci"], r["agreement_with_merged"]
        mark = " **(recommended)**" if r["quant"] == ladder["recommended"] else ""
        lines.append(f"| {r['quant']}{mark} | {f(r['metric'])} | "
                     f"{fmt_ci(ci, missing='—')} | " + "".join(f"{f(r['bars'].get(m))} | " for m in barred)
                     + f"{f(r['p50_ms'], 1)} | "
                     f"{f(r['p95_ms'], 1)} | {f(r['peak_memory_mb'], 0)} | {f(r['cost_per_1k'], 4)} | "
                     f"{'—' if agree is None else format(agree, '.0%')} |")
    return "\n".join(lines) + f"\n\nRecommended: **{ladder['recommended']}** — {ladder['why']}.\n"

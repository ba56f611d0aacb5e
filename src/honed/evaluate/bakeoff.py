"""`bakeoff(task, arms) -> BakeoffDocument`: candidate models × quantizations × settings on the same locked items.

Each arm runs as its own `honed eval` process, one after another: its peak RSS is then its own (not the
previous arm's), a crash loses one arm, and the cache makes the whole bake-off resumable. Arms never run
concurrently, so one arm's latency is not inflated by another's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.cost import (
    CloudPrice,
    HardwareProfile,
    breakeven_requests_per_day,
    cloud_cost_per_1k,
    local_cost_per_1k,
)
from honed.errors import UserError
from honed.evaluate import stats
from honed.evaluate.bakeoff_document import BakeoffDocument
from honed.evaluate.compare import compare_runs
from honed.evaluate.document import EvalDocument, EvalRun, read_eval_document, read_eval_run
from honed.evaluate.scoring import ItemRecord
from honed.store import Store
from honed.task.spec import ArmSpec, Task

_BOOL = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def parse_arm(text: str) -> ArmSpec:
    """`MODEL[,key=value...]` or `key=value,...` → an arm. Keys: the fields of ArmSpec."""
    fields: dict[str, Any] = {}
    for i, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        if "=" not in part:
            if i == 0:
                fields["model"] = part
                continue
            raise UserError(f"arm {text!r}: {part!r} is not key=value (keys: {', '.join(ArmSpec.model_fields)})")
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in ArmSpec.model_fields:
            raise UserError(f"arm {text!r}: unknown key {key!r} (keys: {', '.join(ArmSpec.model_fields)})")
        if key in ("constrained", "think"):
            if value.lower() not in _BOOL:
                raise UserError(f"arm {text!r}: {key} must be true or false, got {value!r}")
            fields[key] = _BOOL[value.lower()]
        else:
            fields[key] = value
    if "model" not in fields:
        raise UserError(f"arm {text!r}: no model (write `MODEL,...` or `model=...`)")
    try:
        return ArmSpec.model_validate(fields)
    except Exception as exc:  # pydantic's ValidationError: report it in one line
        raise UserError(f"arm {text!r}: {exc}") from None


def _eval_args(task: Task, arm: ArmSpec, split: str, repeats: int, limit: int | None, out: Path,
               gpu_layers: int | None = None) -> list[str]:
    args = [sys.executable, "-m", "honed", "eval", str(task.source or task.root), "--model", arm.model,
            "--backend", arm.backend, "--split", split, "--repeats", str(repeats), "--json", str(out)]
    for flag, value in (("--base-url", arm.base_url), ("--adapter", arm.adapter), ("--max-tokens", arm.max_tokens),
                        ("--temperature", arm.temperature), ("--limit", limit)):
        if value is not None:
            args += [flag, str(value)]
    if gpu_layers is not None and arm.backend == "llamacpp":
        args += ["--gpu-layers", str(gpu_layers)]
    if arm.constrained is not None:
        args.append("--constrained" if arm.constrained else "--free")
    if arm.think is not None:
        args.append("--think" if arm.think else "--no-think")
    prompt = arm.prompt or task.prompt
    if prompt != "base":
        args += ["--prompt", prompt]
    return args


@dataclass
class ArmRun:
    """One arm and the eval run folder it wrote."""

    arm: ArmSpec
    run: EvalRun

    @property
    def document(self) -> EvalDocument:
        return self.run.document

    @property
    def records(self) -> list[ItemRecord]:
        return self.run.records

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir


def run_arms(task: Task, arms: list[ArmSpec], *, split: str = "test", repeats: int = 1, limit: int | None = None,
             quiet: bool = False, gpu_layers: int | None = None) -> list[ArmRun]:
    """Run every arm through `honed eval` in its own process (cached, resumable); `gpu_layers`: llama.cpp's
    offload for the llamacpp arms (None: its default, every layer where the build can offload)."""
    labels = [a.display() for a in arms]
    dupes = {x for x in labels if labels.count(x) > 1}
    if dupes:
        raise UserError(f"two arms share the label {sorted(dupes)[0]!r}: give them distinct `label=`s")
    store = Store()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, arm in enumerate(arms):
            out = Path(tmp) / f"arm{i}.json"
            proc = subprocess.run(_eval_args(task, arm, split, repeats, limit, out, gpu_layers),
                                  env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if quiet else None, text=True)
            if proc.returncode != 0:
                detail = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
                raise UserError(f"arm {arm.display()!r} failed (exit {proc.returncode})"
                                + (f": {detail[0]}" if detail else "") + "; fix it and re-run: finished arms "
                                "are cached")
            run_id = read_eval_document(out).run_id
            run_dir = store.find_run(run_id) if run_id else None
            assert run_dir is not None
            runs.append(ArmRun(arm, read_eval_run(run_dir)))
    store.close()
    return runs


def pareto_flags(points: list[dict[str, float | None]], maximize: set[str],
                 tolerance: dict[str, float] | None = None) -> list[bool]:
    """True for each point that no other point dominates. A dimension unknown (None) for either point of a
    pair is left out of that pair's comparison, rather than guessed. `tolerance` gives, per dimension, a
    relative difference below which two values count as equal (peak RSS wobbles by a few MB between runs)."""
    tolerance = tolerance or {}
    flags = []
    for i, p in enumerate(points):
        dominated = False
        for j, q in enumerate(points):
            if i == j:
                continue
            better_or_equal, strictly = True, False
            for key, pv in p.items():
                qv = q.get(key)
                if pv is None or qv is None:
                    continue
                if abs(qv - pv) <= tolerance.get(key, 0.0) * max(abs(pv), abs(qv)):
                    continue
                q_better = qv > pv if key in maximize else qv < pv
                q_worse = qv < pv if key in maximize else qv > pv
                if q_worse:
                    better_or_equal = False
                    break
                strictly = strictly or q_better
            if better_or_equal and strictly:
                dominated = True
                break
        flags.append(not dominated)
    return flags


def analyse(task: Task, runs: list[ArmRun], hardware: HardwareProfile, hardware_as_of: str,
            prices: list[CloudPrice], prices_as_of: str) -> BakeoffDocument:
    """The bake-off document: per arm its numbers, cost, Pareto flag and p-value against the best arm."""
    metric = task.primary_metric
    n = {r.document.n_items for r in runs}
    if len(n) != 1:
        raise UserError(f"arms ran on different item counts {sorted(n)}: run them on the same split and limit")
    quality = [r.document.metrics.get(metric) or 0.0 for r in runs]
    best = max(range(len(runs)), key=lambda i: (quality[i], -(runs[i].document.latency_ms.p95 or 0)))
    raw_p: dict[int, float] = {}
    details: dict[int, dict[str, Any]] = {}
    for i, r in enumerate(runs):
        if i != best:
            cmp = compare_runs(runs[best].run_dir, r.run_dir)
            raw_p[i] = cmp["primary"]["p_value"]
            details[i] = {"diff": cmp["primary"]["diff"], "ci": cmp["primary"]["ci"],
                          "p_value_raw": cmp["primary"]["p_value"],
                          "mcnemar_p": cmp["accuracy"]["mcnemar"]["p_value"]}
    adjusted = dict(zip(raw_p, stats.holm(list(raw_p.values())))) if raw_p else {}
    arms = []
    for i, r in enumerate(runs):
        d = r.document
        sec = (d.latency_ms.mean or 0) / 1000
        cost = local_cost_per_1k(hardware, sec) if sec > 0 else None
        p_tok, c_tok = d.prompt_tokens.mean, d.completion_tokens.mean
        cloud = []
        for price in prices:
            c = cloud_cost_per_1k(price, p_tok, c_tok)
            cloud.append({"name": price.name, "cost_per_1k": round(c, 6),
                          "breakeven_requests_per_day": None if sec <= 0 else
                          (lambda v: None if v is None else round(v))(breakeven_requests_per_day(hardware, sec, c))})
        arms.append({
            "label": r.arm.display(),
            "arm": r.arm.model_dump(exclude_none=True),
            "run_id": d.run_id,
            "model": d.model.model_dump(),
            "gpu_layers": d.model.details.get("n_gpu_layers"),  # llamacpp arms: what ran
            "settings": d.settings,
            "metrics": d.metrics,
            "ci": d.ci,
            "primary": quality[i],
            "latency_ms": d.latency_ms.model_dump(),
            "ttft_ms": d.ttft_ms.model_dump(),
            "tokens_per_s": d.tokens_per_s,
            "items_per_s": d.items_per_s,
            "peak_memory_mb": d.peak_memory_mb,
            "memory_source": d.memory_source,
            "gpu_memory_mb": d.gpu_memory_mb,
            "cost_per_1k": None if cost is None else round(cost, 6),
            "cloud": cloud,
            "consistency": d.consistency,
            "failures": d.failures,
            "best": i == best,
            "vs_best": None if i == best else round(adjusted[i], 6),
            "vs_best_detail": details.get(i),
            "latencies_ms": [round(x.latency_s * 1000, 2) for x in r.records],
        })
    flags = pareto_flags([{"quality": a["primary"], "p95": a["latency_ms"]["p95"], "memory": a["peak_memory_mb"],
                           "cost": a["cost_per_1k"]} for a in arms], maximize={"quality"},
                         tolerance={"memory": 0.05})
    for a, f in zip(arms, flags):
        a["pareto"] = f
    return BakeoffDocument.model_validate({
        "task": task.name,
        "kind": task.kind,
        "split": runs[0].document.split,
        "n_items": runs[0].document.n_items,
        "data": runs[0].document.data.model_dump(),
        "primary_metric": metric,
        "best": arms[best]["label"],
        "hardware": {**hardware.model_dump(), "as_of": hardware_as_of},
        "cloud_prices_as_of": prices_as_of,
        "significance": "vs_best: Holm-adjusted p-value of a paired bootstrap on the primary metric "
                        "(2,000 resamples) against the best arm; vs_best_detail also gives exact McNemar on accuracy",
        "arms": arms,
    })


def bakeoff(task: Task, arms: Sequence[ArmSpec | str] | None = None, *, split: str = "test", repeats: int = 1,
            limit: int | None = None, hardware: str | None = None, hardware_file: Path | None = None,
            prices_file: Path | None = None, gpu_layers: int | None = None, quiet: bool = False) -> BakeoffDocument:
    """Run every arm on the same items of `split` and compare them: quality with CIs, latency, memory, cost per
    1K requests, paired significance against the best arm, the Pareto frontier.

    `arms`: `ArmSpec`s or `MODEL[,key=value...]` strings (`parse_arm`); default: the task's `[bakeoff]` arms.
    `hardware`: a profile of the cost model (default: the task's); `hardware_file`/`prices_file`: your own tables.
    """
    from honed.cost import load_hardware, load_prices

    specs = [parse_arm(a) if isinstance(a, str) else a for a in arms] if arms else list(task.spec.bakeoff.arms)
    if len(specs) < 2:
        raise UserError("a bake-off needs at least two arms: pass --arm MODEL twice or more, or list "
                        "[[bakeoff.arms]] in honed.toml")
    hw, hw_date = load_hardware(hardware or task.spec.bakeoff.hardware, hardware_file)
    prices, prices_date = load_prices(prices_file)
    runs = run_arms(task, specs, split=split, repeats=repeats, limit=limit, quiet=quiet, gpu_layers=gpu_layers)
    return analyse(task, runs, hw, hw_date, prices, prices_date)

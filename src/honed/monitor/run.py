"""`monitor(log, package)`: anchors, drift, shadow comparison and routing economics in one report."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from honed import __version__
from honed.data.io import input_fields
from honed.display import Bar
from honed.errors import MissingDependency, UserError
from honed.exporting.package import ANCHORS, Package, load_package
from honed.monitor import drift
from honed.monitor.anchors import check_anchors
from honed.monitor.drift import Check, DriftConfig
from honed.monitor.traffic import Traffic, load_traffic, parse_window, token_means
from honed.task.data import Item, load_items
from honed.task.prompt import build_answer, build_messages
from honed.task.spec import Task

ECONOMICS_DEFAULT_CLOUD = "gpt-4o-mini"
"""The cheapest model of the built-in price table: all-cloud is then as cheap as it gets, so the saving a
hybrid shows against it is not overstated."""


class MonitorConfig(BaseModel):
    """Settings of a monitor run (the CLI's options map onto these)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    drift: DriftConfig = DriftConfig()
    """Thresholds of the drift checks."""
    length_reference: Literal["eval", "first-window"] = "eval"
    """Output lengths are compared with the eval set's expected answers (as the model should write them), or
    the last time window with the first one."""
    max_inputs: int = 1000
    """At most this many logged inputs (a seeded random sample) are embedded for input drift."""
    shadow_sample: int = 50
    """Logged inputs (distinct) that the candidate and the incumbent both answer."""
    hardware: str = "cpu-2core-vm"
    """Hardware profile (honed.cost) the local model runs on."""
    hardware_file: Path | None = None
    """Your own hardware profiles (TOML)."""
    prices_file: Path | None = None
    """Your own cloud price table (TOML)."""
    cloud_model: str | None = None
    """Priced cloud model of the fallback; default: the fallback layer's model when the price table has it,
    else the table's cheapest."""
    primary_layer: str | None = None
    """The cascade layer that serves the package's model (default: found from the log)."""
    seed: int = 0


@dataclass
class MonitorReport:
    """The report document (what report.json holds), its flags, and where it was written."""

    doc: dict[str, Any]
    flags: list[str] = field(default_factory=list)
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def _text(inputs: dict[str, Any], fields: list[str]) -> str:
    """The text of an input that the embedding sees: the prompt's fields, in the template's order."""
    parts = [inputs.get(f) for f in fields if inputs.get(f) is not None]
    return "\n".join(p if isinstance(p, str) else str(p) for p in parts)


def _label(task: Task, answer: Any) -> str | None:
    """The category an answer counts under in the label mix (None: no label mix for this kind)."""
    if task.kind == "classify":
        return str(answer)
    if task.kind == "pick":
        none = task.spec.pick.none_label if task.spec.pick else "NONE"
        return none if answer == none else "candidate"
    return None


def _drift_checks(task: Task, eval_items: list[Item], traffic: Traffic, width: timedelta | None,
                  cfg: MonitorConfig) -> tuple[list[Check], dict[str, Any]]:
    recs = traffic.records
    windows = traffic.windows(width)
    checks = []
    if cfg.length_reference == "eval":
        ref = [len(build_answer(task, i.expected)) for i in eval_items if i.expected is not None]
        cur = [len(r.output) for r in recs]
        checks.append(drift.output_length(ref, cur, cfg.drift, "eval set's expected answers"))
    elif len(windows) < 2:
        checks.append(drift.skipped("output_length", "KS test, last window vs first", "the log spans one window"))
    else:
        first, last = windows[0][2], windows[-1][2]
        checks.append(drift.output_length([len(recs[i].output) for i in first], [len(recs[i].output) for i in last],
                                          cfg.drift, "first window of the log (last window tested)"))
    if task.kind in ("classify", "pick"):
        ref_counts = Counter(_label(task, i.expected) for i in eval_items)
        cur_counts = Counter(_label(task, r.answer) for r in recs if r.answer is not None)
        checks.append(drift.label_mix(ref_counts, cur_counts, cfg.drift))
    else:
        checks.append(drift.skipped("label_mix", "chi-square", f"a {task.kind} task has no closed label set"))
    counts = [(len(ix), sum(traffic.escalated[i] for i in ix)) for _, _, ix in windows]
    checks.append(drift.escalation(counts, cfg.drift))
    timeline = {"windows": [{"start": a.isoformat(), "end": b.isoformat(), "n": n, "escalated": e}
                            for (a, b, _), (n, e) in zip(windows, counts, strict=True)],
                "escalation_source": traffic.escalation_source, "primary_layer": traffic.primary_layer}
    checks.append(_input_check(task, eval_items, traffic, cfg))
    return checks, timeline


def _input_check(task: Task, eval_items: list[Item], traffic: Traffic, cfg: MonitorConfig) -> Check:
    import random

    method = "sentence-embedding distance to the eval set's centroid"
    fields = [f for f in input_fields(task) if f != "none_label"]
    try:
        from honed.monitor.embed import default_embedder

        embedder = default_embedder()
    except MissingDependency as exc:
        return drift.skipped("input_distance", method, str(exc))
    recs = traffic.records
    pick = sorted(random.Random(cfg.seed).sample(range(len(recs)), min(cfg.max_inputs, len(recs))))
    eval_vecs = embedder.embed([_text(i.inputs, fields) for i in eval_items])
    log_vecs = embedder.embed([_text(recs[i].input, fields) for i in pick])
    check = drift.input_distance(eval_vecs, log_vecs, cfg.drift)
    check.statistic.update(embedding=embedder.info, fields=fields, sampled=len(pick), of=len(recs))
    return check


def _economics(pkg: Package, task: Task, traffic: Traffic, requests_per_day: float | None,
               cfg: MonitorConfig) -> dict[str, Any]:
    from honed.cost.model import load_hardware, load_prices
    from honed.monitor.economics import TrafficFigures, routing_economics

    recs = traffic.records
    span_days = traffic.span.total_seconds() / 86400
    if requests_per_day is not None:
        volume, source = requests_per_day, "given (--requests-per-day)"
    elif span_days > 0:
        volume = len(recs) / span_days
        source = f"{len(recs)} requests over the log's {span_days:.2f} days ({recs[0].timestamp.isoformat()} → " \
                 f"{recs[-1].timestamp.isoformat()})"
    else:
        return {"skipped": "all records share one timestamp: pass --requests-per-day"}
    prompts = ["\n".join(m.content for m in build_messages(task, r.input)) for r in recs]
    try:
        from honed.exporting.verify import package_gguf

        p_tok, c_tok, tok_source = token_means(recs, prompts, package_gguf(pkg))  # checked: llama.cpp reads it
    except MissingDependency as exc:
        return {"skipped": str(exc)}
    local = [r.latency_ms / 1000 for r, esc in zip(recs, traffic.escalated, strict=True) if not esc]
    hw, hw_date = load_hardware(cfg.hardware, cfg.hardware_file)
    prices, prices_date = load_prices(cfg.prices_file)
    by_name = {p.name: p for p in prices}
    fallback_models = Counter(r.model for r, esc in zip(recs, traffic.escalated, strict=True) if esc)
    name = cfg.cloud_model or next((m for m, _ in fallback_models.most_common() if m in by_name), None)
    name = name or (ECONOMICS_DEFAULT_CLOUD if ECONOMICS_DEFAULT_CLOUD in by_name else prices[0].name)
    if name not in by_name:
        raise UserError(f"cloud model {name!r} is not in the price table ({cfg.prices_file or 'built-in'}): "
                        f"expected one of {', '.join(by_name)}")
    fig = TrafficFigures(n_requests=len(recs), n_escalated=sum(traffic.escalated), requests_per_day=volume,
                         volume_source=source, prompt_tokens=p_tok, completion_tokens=c_tok,
                         token_source=tok_source, local_seconds=sum(local) / len(local) if local else None)
    return routing_economics(fig, hw, hw_date, by_name[name], prices_date)


def monitor(log: Path, package: Path, *, candidate: str | None = None, endpoint: str | None = None,
            window: str | None = None, out: Path | None = None, requests_per_day: float | None = None,
            config: MonitorConfig | None = None, progress: bool = False) -> MonitorReport:
    """Check a shipped package against its request log; write report.md, report.html and report.json.

    Flags (any one makes `MonitorReport.flagged` true and the CLI exit 1): anchors that FAIL the gate's
    threshold, and each flagged drift check. The shadow comparison is evidence about a candidate, not about
    the running model, so it never raises a flag.
    """
    from honed.monitor.models import open_candidate, open_incumbent
    from honed.monitor.report import write_report
    from honed.monitor.shadow import sample_records, shadow_compare

    t0 = time.perf_counter()
    cfg = config or MonitorConfig()
    width = parse_window(window) if window else None
    pkg = load_package(package)
    task = pkg.task()
    eval_items = load_items(task, "test")
    shipped_sha = next((pkg.manifest.files.get(r.file) for r in pkg.manifest.rungs
                        if r.quant.upper() == pkg.manifest.recommended.upper()), None)
    traffic = load_traffic(log, task.name, shipped_sha, cfg.primary_layer)

    doc: dict[str, Any] = {
        "honed_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "log": str(Path(log).resolve()), "package": str(pkg.root.resolve()), "task": task.name, "kind": task.kind,
        "package_version": pkg.manifest.version, "recommended": pkg.manifest.recommended,
        "n_requests": len(traffic.records), "other_tasks": traffic.other_tasks, "log_files": traffic.files,
        "log_notes": traffic.skipped,
        "span": {"first": traffic.records[0].timestamp.isoformat(), "last": traffic.records[-1].timestamp.isoformat()},
        "settings": cfg.model_dump(mode="json"),
    }
    incumbent = open_incumbent(pkg, endpoint)
    try:
        n_anchors = len(pkg.anchors()) if (pkg.root / ANCHORS).is_file() else 0
        with Bar(progress and n_anchors > 0, "anchors", total=n_anchors, transient=True) as bar:
            doc["anchors"] = check_anchors(pkg, task, incumbent, bar.advance)
        checks, doc["timeline"] = _drift_checks(task, eval_items, traffic, width, cfg)
        doc["drift"] = [c.as_dict() for c in checks]
        doc["shadow"] = None
        if candidate:
            sample = sample_records(traffic.records, cfg.shadow_sample, cfg.seed)
            cand, label = open_candidate(candidate)
            try:
                with Bar(progress and bool(sample), "shadow", total=2 * len(sample), transient=True) as bar:
                    doc["shadow"] = shadow_compare(task, incumbent, cand, sample,
                                                   labels=((f"{task.name}-{pkg.manifest.version} "
                                                           f"({pkg.manifest.recommended})"), label), on_done=bar.advance)
            finally:
                cand.close()
    finally:
        incumbent.close()
    doc["economics"] = _economics(pkg, task, traffic, requests_per_day, cfg)
    doc["lengths"] = {"log": [len(r.output) for r in traffic.records],
                      "eval": [len(build_answer(task, i.expected)) for i in eval_items if i.expected is not None]}
    flags = []
    a = doc["anchors"]
    if not a["primary_passed"]:
        flags.append(f"anchors FAIL: {a['primary_metric']} {a['value']:.3f} < {a['min_value']:.3f}")
    flags += [f"anchors FAIL: {b['metric']} {b['value']:.3f} < the task's bar {b['bar']:.3f}"
              for b in a["bars"] if not b["passed"]]
    flags += [f"drift: {c.name}: {c.detail}" for c in checks if c.flagged]
    doc["flags"] = flags
    doc["status"] = "FLAGGED" if flags else "OK"
    doc["wall_s"] = round(time.perf_counter() - t0, 2)
    report = MonitorReport(doc=doc, flags=flags)
    write_report(report, task, out)
    return report

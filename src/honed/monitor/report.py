"""The monitor's report: report.json (the document), report.md (for people and PRs) and report.html (one
self-contained page with the plots), written atomically into the output folder."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honed.display import MISSING, fmt, fmt_ci
from honed.store import Store, write_json_atomic, write_text_atomic
from honed.task.spec import Task

if TYPE_CHECKING:
    from honed.monitor.run import MonitorReport


def _rate(r: dict[str, Any]) -> str:
    return MISSING if r["rate"] is None else f"{r['rate']:.1%} ({r['k']}/{r['n']}, 95% CI {fmt_ci(r['ci'])})"


def _stat_line(c: dict[str, Any]) -> str:
    keys = ("ks_d", "psi", "chi2", "centroid_distance", "share_beyond", "rate", "increase", "p_value",
            "centroid_p_value", "share_p_value")
    return ", ".join(f"{k} {fmt(c['statistic'][k])}" for k in keys if k in c["statistic"])


def _bar_lines(anchors: dict[str, Any]) -> list[str]:
    """One line per bar of the task's `[acceptance] min_metrics`, as the anchors scored it."""
    return [f"{b['metric']} {b['value']:.3f} (95% CI {fmt_ci(b['ci'])}) vs the task's bar {b['bar']:.3f}: "
            f"{'PASS' if b['passed'] else 'FAIL'}" for b in anchors.get("bars", [])]


def markdown(doc: dict[str, Any]) -> str:
    a = doc["anchors"]
    lines = [(f"# Monitor · {doc['task']} · package {doc['package_version']} ({doc['recommended']}) · "
             f"**{doc['status']}**"), "",
             (f"log `{doc['log']}`: {doc['n_requests']} requests, {doc['span']['first']} → {doc['span']['last']}"
             f" · package `{doc['package']}`"), ""]
    lines += [f"- {f}" for f in doc["flags"]] or ["No check is flagged."]
    lines += ["", "## Anchors", "",
              (f"**{a['status']}**: {a['primary_metric']} {a['value']:.3f} (95% CI {fmt_ci(a['ci'])}) on {a['n']} anchors "
              f"vs the gate's threshold {a['min_value']:.3f} · model `{a['model']['name']}` ({a['model']['backend']})")]
    lines += [f"- {line}" for line in _bar_lines(a)]
    if a["failures"]:
        lines.append("failures: " + ", ".join(f"{k} {v}" for k, v in a["failures"].items()))
    if a["changed_since_export"]:
        lines += ["", f"{len(a['changed_since_export'])} anchor(s) changed answer since export:", "",
                  "| anchor | at export | now | expected | correct now |", "|---|---|---|---|---|"]
        lines += [f"| {c['id']} | {c['at_export']} | {c['now']} | {c['expected']} | {c['correct']} |"
                  for c in a["changed_since_export"]]
    else:
        lines += ["", "No anchor changed answer since export."]
    lines += ["", "## Drift", "", "| check | flagged | statistic | threshold | detail |", "|---|---|---|---|---|"]
    for c in doc["drift"]:
        flag = "skipped" if c["skipped"] else ("**FLAGGED**" if c["flagged"] else "no")
        thr = ", ".join(f"{k} {fmt(v)}" for k, v in c["threshold"].items())
        lines.append(f"| {c['name']} | {flag} | {_stat_line(c)} | {thr} | {c['detail']} |")
    lines += ["", "Methods:", ""] + [f"- {c['name']}: {c['method']}" for c in doc["drift"]]
    tl = doc["timeline"]
    lines += ["", f"Escalation: {tl['escalation_source']}.", "", "| window start | requests | escalated | rate |",
              "|---|---|---|---|"]
    lines += [f"| {w['start']} | {w['n']} | {w['escalated']} | {w['escalated'] / w['n']:.1%} |" if w["n"] else
              f"| {w['start']} | 0 | 0 | – |" for w in tl["windows"]]
    if doc["shadow"]:
        s = doc["shadow"]
        v, c = s["validity"], s["correctness"]
        lines += ["", "## Shadow comparison", "",
                  (f"incumbent `{s['labels']['incumbent']}` vs candidate `{s['labels']['candidate']}` on {s['n']} "
                  "logged inputs (paired)"), "",
                  "| | incumbent | candidate | paired test |", "|---|---|---|---|",
                  f"| agreement ({s['agreement']['definition']}) | {_rate(s['agreement'])} | | |",
                  (f"| valid answers | {_rate(v['incumbent'])} | {_rate(v['candidate'])} | {v['mcnemar']['test']}: "
                  f"p = {fmt(v['mcnemar']['p_value'])} ({v['mcnemar']['incumbent_only']} vs "
                  f"{v['mcnemar']['candidate_only']} discordant) |")]
        if c["n"]:
            lines.append(f"| correct (trusted labels: {', '.join(c['label_sources'])}) | {_rate(c['incumbent'])} | "
                         f"{_rate(c['candidate'])} | exact McNemar: p = {fmt(c['mcnemar']['p_value'])} |")
        else:
            lines += ["", c["note"]]
    lines += ["", "## Routing economics", ""] + _economics_md(doc["economics"])
    lines += ["", f"honed {doc['honed_version']} · {doc['created']} · {doc['wall_s']} s"]
    return "\n".join(lines) + "\n"


def _economics_md(e: dict[str, Any]) -> list[str]:
    if "skipped" in e:
        return [f"skipped: {e['skipped']}"]
    t = e["traffic"]
    out = [(f"{t['requests_per_day']:.1f} requests/day ({t['volume_source']}); {t['escalation_rate']:.1%} "
           f"escalated; {t['prompt_tokens']:.1f} prompt + {t['completion_tokens']:.1f} completion tokens per "
           f"request ({t['token_source']}); month = {e['days_per_month']} days."), "",
           "| component | monthly cost (USD) | basis |", "|---|---|---|"]
    out += [f"| {r['component']} | {r['monthly_usd']:,.2f} | {r['basis']} |" for r in e["rows"]]
    be, volume = e.get("breakeven_escalation"), e.get("breakeven_requests_per_day")
    if be is not None and be > 0:
        out += ["", f"At this volume the hybrid costs less than all-cloud while escalation stays below {be:.1%}."]
    elif be is not None:
        out += ["", "At this volume the local machine alone costs more than all-cloud: the hybrid cannot win."]
    if volume is not None:
        out += ["", (f"At the log's escalation rate the hybrid breaks even with all-cloud at {volume:,.0f} "
                    "requests/day (one machine).")]
    elif be is not None:
        out += ["", "The local answers save less than their power costs: the hybrid never breaks even."]
    if e.get("note"):
        out += ["", e["note"]]
    return out


def _figures(doc: dict[str, Any]) -> list[tuple[str, str]]:
    import plotly.graph_objects as go

    from honed.report.html import figure_div

    out = []
    lengths = doc["lengths"]
    fig = go.Figure([go.Histogram(x=lengths["eval"], name="eval set answers", histnorm="probability", opacity=0.6),
                     go.Histogram(x=lengths["log"], name="log outputs", histnorm="probability", opacity=0.6)])
    fig.update_layout(barmode="overlay", xaxis_title="output length (characters)", yaxis_title="share", height=360)
    out.append(("Output length: log vs eval set", figure_div(fig)))
    mix = next((c for c in doc["drift"] if c["name"] == "label_mix" and not c["skipped"]), None)
    if mix:
        cats = list(mix["statistic"]["reference"])
        fig = go.Figure([go.Bar(x=cats, y=[mix["statistic"]["reference"][c] for c in cats], name="eval set"),
                         go.Bar(x=cats, y=[mix["statistic"]["log"][c] for c in cats], name="log")])
        fig.update_layout(barmode="group", yaxis_title="share", height=360)
        out.append(("Label mix", figure_div(fig)))
    esc = next((c for c in doc["drift"] if c["name"] == "escalation" and not c["skipped"]), None)
    if esc:
        ws = [(w, t) for w, t in zip(esc["statistic"]["windows"], doc["timeline"]["windows"], strict=True) if w["n"]]
        rates = [w["rate"] for w, _ in ws]
        fig = go.Figure(go.Scatter(
            x=[t["start"] for _, t in ws], y=rates, mode="lines+markers", name="escalation rate",
            error_y={"type": "data", "symmetric": False, "array": [w["ci"][1] - w["rate"] for w, _ in ws],
                     "arrayminus": [w["rate"] - w["ci"][0] for w, _ in ws]}))
        fig.update_layout(yaxis_title="escalated share (95% Wilson CI)", height=360)
        out.append(("Escalation rate over time", figure_div(fig)))
    dist = next((c for c in doc["drift"] if c["name"] == "input_distance" and not c["skipped"]), None)
    if dist:
        st = dist["statistic"]
        fig = go.Figure([go.Histogram(x=st["eval_distances"], name="eval set (leave-one-out)", histnorm="probability",
                                      opacity=0.6),
                         go.Histogram(x=st["log_distances"], name="log inputs", histnorm="probability", opacity=0.6)])
        fig.add_vline(x=st["cutoff"], line_dash="dash", annotation_text=f"eval {dist['threshold']['quantile']:.0%}")
        fig.update_layout(barmode="overlay", xaxis_title="cosine distance to the eval centroid", yaxis_title="share",
                          height=360)
        out.append(("Input distance from the eval set's centroid", figure_div(fig)))
    return out


def _md_table_to_html(lines: list[str]) -> str:
    return "<pre>" + html.escape("\n".join(lines)) + "</pre>"


def html_page(doc: dict[str, Any]) -> str:
    from honed.report.html import page, sortable_table

    a = doc["anchors"]
    status = "".join(f"<li>{html.escape(f)}</li>" for f in doc["flags"]) or "<li>No check is flagged.</li>"
    sections: list[tuple[str, str]] = [("Flags", f"<ul>{status}</ul>")]
    sections.append(("Anchors", f"<p><b>{a['status']}</b>: {html.escape(a['primary_metric'])} {a['value']:.3f} "
                     f"(95% CI {fmt_ci(a['ci'])}) on {a['n']} anchors vs the gate's threshold {a['min_value']:.3f}</p>"
                     + "".join(f"<p>{html.escape(line)}</p>" for line in _bar_lines(a))
                     + sortable_table(["anchor", "expected", "answer", "correct", "cause", "latency ms"],
                                      [[i["id"], i["expected"], i["answer"], i["correct"], i["cause"], i["latency_ms"]]
                                       for i in a["items"]])))
    rows = [[c["name"], "skipped" if c["skipped"] else ("FLAGGED" if c["flagged"] else "no"), _stat_line(c),
             ", ".join(f"{k} {fmt(v)}" for k, v in c["threshold"].items()), c["detail"], c["method"]]
            for c in doc["drift"]]
    sections.append(("Drift", sortable_table(["check", "flagged", "statistic", "threshold", "detail", "method"], rows)))
    sections += _figures(doc)
    if doc["shadow"]:
        md = markdown(doc).split("## Shadow comparison", 1)[1].split("## Routing economics", 1)[0]
        sections.append(("Shadow comparison", _md_table_to_html(md.strip().splitlines())))
    e = doc["economics"]
    if "skipped" in e:
        sections.append(("Routing economics", f"<p>skipped: {html.escape(e['skipped'])}</p>"))
    else:
        sections.append(("Routing economics", "<p>" + html.escape(_economics_md(e)[0]) + "</p>" + sortable_table(
            ["component", "monthly cost (USD)", "basis"],
            [[r["component"], (f"{r['monthly_usd']:,.2f}", r["monthly_usd"]), r["basis"]] for r in e["rows"]])))
    meta = (f"log <code>{html.escape(doc['log'])}</code> · {doc['n_requests']} requests · package "
            f"<code>{html.escape(doc['package'])}</code> · honed {doc['honed_version']} · {doc['created']}")
    return page(f"Monitor · {doc['task']} · {doc['status']}", meta, sections)


def write_report(report: MonitorReport, task: Task, out: Path | None) -> None:
    """Write the three files into `out` (default: a new run folder in the store, indexed there)."""
    store = None
    if out is None:
        store = Store()
        run_id, out = store.new_run_dir("monitor", task.name)
        report.doc["run_id"] = run_id
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    write_json_atomic(files["json"], report.doc)
    write_text_atomic(files["md"], markdown(report.doc))
    write_text_atomic(files["html"], html_page(report.doc))
    report.out_dir, report.files = out, files
    if store is not None:
        store.record_run(report.doc["run_id"], "monitor", task.name, report.doc["anchors"]["model"]["name"],
                         report.doc["anchors"]["model"]["sha256"], out, "complete",
                         {"status": report.doc["status"], "flags": len(report.flags)})
        store.close()

"""The bake-off report: Markdown for a PR, and a self-contained HTML page with the plots."""

from __future__ import annotations

import html
from typing import Any

from honed.display import fmt, fmt_ci
from honed.report.html import figure_div, page, sortable_table


def _failures(arm: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in arm["failures"].items() if v) or "none"


def bakeoff_markdown(doc: dict[str, Any]) -> str:
    m = doc["primary_metric"]
    hw = doc["hardware"]
    lines = [
        f"## Bake-off: {doc['task']} ({doc['kind']}), {doc['n_items']} items of split {doc['split']}",
        "",
        f"data sha256 `{doc['data']['items_sha256'][:12]}` · hardware profile `{hw['name']}` (prices as of "
        f"{hw['as_of']}) · cloud prices as of {doc['cloud_prices_as_of']} · best arm: **{doc['best']}**",
        "",
        f"| arm | {m} | 95% CI | accuracy | P50 ms | P95 ms | TTFT P50 ms | tok/s | peak MB | $/1K local | "
        "$/1K cloud (cheapest) | Pareto | p vs best | failures |",
        "|---|" + "---|" * 13,
    ]
    for a in doc["arms"]:
        cheapest = min(a["cloud"], key=lambda c: c["cost_per_1k"]) if a["cloud"] else None
        cloud = "–" if cheapest is None else f"{cheapest['cost_per_1k']:.4f} ({cheapest['name']})"
        lines.append(
            f"| {a['label']} | {fmt(a['primary'])} | {fmt_ci(a['ci'].get(m), missing='')} | {fmt(a['metrics'].get('accuracy'))} | "
            f"{fmt(a['latency_ms']['p50'], 0)} | {fmt(a['latency_ms']['p95'], 0)} | {fmt(a['ttft_ms']['p50'], 0)} | "
            f"{fmt(a['tokens_per_s'], 1)} | {fmt(a['peak_memory_mb'], 0) if a['peak_memory_mb'] else 'unknown'} | "
            f"{fmt(a['cost_per_1k'], 4)} | "
            f"{cloud} | "
            f"{'yes' if a['pareto'] else ''} | {'best' if a['best'] else fmt(a['vs_best'], 4)} | {_failures(a)} |")
    lines += ["", "Models: " + "; ".join(f"{a['label']} = `{a['model'].get('path') or a['model']['name']}` "
                                         f"sha256 `{(a['model'].get('sha256') or 'unknown')[:12]}`"
                                         for a in doc["arms"]), "",
              f"p vs best: {doc['significance']}.", ""]
    return "\n".join(lines)


def _pareto_figure(doc: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    m = doc["primary_metric"]
    fig = go.Figure()
    for on, name, color in ((True, "on the Pareto frontier", "#1f6feb"), (False, "dominated", "#9aa4b5")):
        arms = [a for a in doc["arms"] if a["pareto"] == on]
        if not arms:
            continue
        fig.add_trace(go.Scatter(
            x=[a["latency_ms"]["p95"] for a in arms], y=[a["primary"] for a in arms], mode="markers+text",
            text=[a["label"] for a in arms], textposition="top center", name=name,
            marker={"size": [12 + (a["peak_memory_mb"] or 0) / 50 for a in arms], "color": color,
                    "line": {"width": 1, "color": "#1d2433"}},
            customdata=[[a["peak_memory_mb"], a["cost_per_1k"]] for a in arms],
            hovertemplate="%{text}<br>" + m + " %{y:.3f}<br>P95 %{x:.0f} ms<br>peak %{customdata[0]} MB"
                          "<br>$%{customdata[1]:.4f} per 1K<extra></extra>"))
    fig.update_layout(title=f"{m} vs P95 latency (marker size: peak memory)", xaxis_title="P95 latency (ms)",
                      yaxis_title=m, height=460, margin={"t": 50, "l": 60, "r": 20, "b": 50})
    return fig


def _confusion_figures(doc: dict[str, Any]) -> list[Any]:
    import plotly.graph_objects as go

    figs = []
    for a in doc["arms"]:
        conf = a["metrics"].get("confusion")
        if not conf:
            continue
        cols = conf.get("columns") or conf["labels"]
        fig = go.Figure(go.Heatmap(z=conf["matrix"], x=cols, y=conf["labels"], colorscale="Blues",
                                   texttemplate="%{z}", showscale=False))
        fig.update_layout(title=a["label"], xaxis_title="predicted", yaxis_title="expected", height=360,
                          width=420, yaxis={"autorange": "reversed"}, margin={"t": 40, "l": 90, "r": 10, "b": 80})
        figs.append(fig)
    return figs


def _latency_figure(doc: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure([go.Box(y=a["latencies_ms"], name=a["label"], boxpoints="outliers") for a in doc["arms"]])
    fig.update_layout(title="Latency per request", yaxis_title="ms", height=400, showlegend=False,
                      margin={"t": 50, "l": 60, "r": 20, "b": 80})
    return fig


def _failure_figure(doc: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    causes = [c for c in doc["arms"][0]["failures"] if any(a["failures"].get(c) for a in doc["arms"])]
    fig = go.Figure([go.Bar(name=c, x=[a["label"] for a in doc["arms"]],
                            y=[a["failures"].get(c, 0) for a in doc["arms"]]) for c in causes])
    fig.update_layout(barmode="stack", title="Failures by cause", yaxis_title="responses", height=400,
                      margin={"t": 50, "l": 60, "r": 20, "b": 80})
    return fig


def bakeoff_html(doc: dict[str, Any]) -> str:
    m = doc["primary_metric"]
    headers = ["arm", m, "CI low", "CI high", "accuracy", "P50 ms", "P95 ms", "TTFT P50 ms", "tok/s", "peak MB",
               "$/1K local", "Pareto", "p vs best", "failures"]
    rows, classes = [], []
    for a in doc["arms"]:
        ci = a["ci"].get(m) or [None, None]
        rows.append([a["label"], fmt(a["primary"]), fmt(ci[0]), fmt(ci[1]), fmt(a["metrics"].get("accuracy")),
                     fmt(a["latency_ms"]["p50"], 0), fmt(a["latency_ms"]["p95"], 0), fmt(a["ttft_ms"]["p50"], 0),
                     fmt(a["tokens_per_s"], 1), fmt(a["peak_memory_mb"], 0) if a["peak_memory_mb"] else "unknown",
                     fmt(a["cost_per_1k"], 4), "yes" if a["pareto"] else "no",
                     ("best", -1) if a["best"] else fmt(a["vs_best"], 4), _failures(a)])
        classes.append("pareto" if a["pareto"] else "")
    cloud_rows = [[a["label"], c["name"], fmt(a["cost_per_1k"], 4), fmt(c["cost_per_1k"], 4),
                   c["breakeven_requests_per_day"] if c["breakeven_requests_per_day"] is not None else "never"]
                  for a in doc["arms"] for c in a["cloud"]]
    hw = doc["hardware"]
    meta = (f"{doc['n_items']} items of split {html.escape(doc['split'])} · data sha256 "
            f"<code>{doc['data']['items_sha256'][:12]}</code> · hardware <code>{html.escape(hw['name'])}</code> "
            f"(as of {html.escape(hw['as_of'])}) · cloud prices as of {html.escape(doc['cloud_prices_as_of'])} · "
            f"best: <b>{html.escape(doc['best'])}</b><br>{html.escape(doc['significance'])}")
    models = sortable_table(["arm", "model file", "sha256", "backend", "settings"], [
        [a["label"], a["model"].get("path") or a["model"]["name"], (a["model"].get("sha256") or "unknown")[:16],
         a["model"]["backend"], ", ".join(f"{k}={v}" for k, v in a["settings"].items() if k != "stop")]
        for a in doc["arms"]])
    confusions = _confusion_figures(doc)
    sections = [
        ("Arms (click a header to sort)", sortable_table(headers, rows, classes)),
        ("Pareto frontier", figure_div(_pareto_figure(doc))),
    ]
    if confusions:
        sections.append(("Confusion matrices", '<div class="grid">' + "".join(figure_div(f) for f in confusions)
                         + "</div>"))
    sections += [
        ("Latency", figure_div(_latency_figure(doc))),
        ("Failures", figure_div(_failure_figure(doc))),
        ("Cost: local vs cloud APIs, per 1,000 requests", sortable_table(
            ["arm", "cloud model", "$/1K local", "$/1K cloud", "local cheaper above (requests/day)"], cloud_rows)),
        ("Models", models),
    ]
    return page(f"Bake-off · {doc['task']} ({doc['kind']})", meta, sections)

"""Markdown rendering of an evaluation document: what `honed eval` prints and writes to summary.md."""

from __future__ import annotations

from typing import Any

from honed.display import fmt, fmt_ci

HEADLINE = ("accuracy", "macro_f1", "false_pick", "wrong_pick", "false_none", "valid_json_rate",
            "schema_valid_rate", "exact_match", "record_f1", "field_f1", "entity_f1", "relationship_f1",
            "relationship_unchecked_f1", "relationships_flipped", "relationships_dropped", "format_pass_rate",
            "keyword_hit_rate")


def markdown_summary(doc: dict[str, Any]) -> str:
    m, ci = doc["metrics"], doc["ci"]
    model = doc["model"]
    sha = (model.get("sha256") or "unknown")[:12]
    lines = [
        f"## {doc['task']} ({doc['kind']}) · {model['name']} · split {doc['split']}",
        "",
        f"model `{model.get('path') or model['name']}` sha256 `{sha}` · backend {model['backend']} · "
        f"prompt {model.get('prompt_format') or 'chat'} · data sha256 `{(doc['data']['items_sha256'] or '')[:12]}`"
        f" · {doc['n_items']} items × {doc['settings']['repeats']} repeat(s)"
        f" · constrained={doc['settings']['constrained']} · temperature {doc['settings']['temperature']}",
        "",
        "| metric | value | 95% CI |",
        "|---|---|---|",
    ]
    counts = m.get("counts") or {}
    for key in HEADLINE:
        if key in m and m[key] is not None:
            interval = ci.get(key)
            lines.append(f"| {key} | {fmt(m[key])} | {fmt_ci(interval)} |")
        elif key in counts:
            lines.append(f"| {key} | {counts[key]} | |")
    for name, rate in (m.get("per_rule") or {}).items():
        lines.append(f"| rule `{name}` | {fmt(rate)} | |")
    lat, ttft = doc["latency_ms"], doc["ttft_ms"]

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.0f} ms"

    lines += [
        "",
        f"latency P50 {ms(lat['p50'])} · P95 {ms(lat['p95'])} · TTFT P50 {ms(ttft['p50'])} · "
        f"P95 {ms(ttft['p95'])} · {fmt(doc['tokens_per_s'])} tok/s · {fmt(doc['items_per_s'])} items/s "
        f"(model time) · cache {doc['cache']['hits']} hit / {doc['cache']['misses']} new",
    ]
    if doc.get("consistency"):
        c = doc["consistency"]
        lines.append(f"consistency across repeats: all agree {fmt(c['all_agree_rate'])}, "
                     f"mean agreement {fmt(c['mean_agreement'])}")
    failures = {k: v for k, v in doc["failures"].items() if v}
    lines += ["", "failures: " + (", ".join(f"{k} {v}" for k, v in failures.items()) if failures else "failures: none")]
    per_class = m.get("per_class") or m.get("per_field") or {}
    if per_class:
        lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        for name, row in per_class.items():
            lines.append(f"| {name} | {fmt(row['precision'])} | {fmt(row['recall'])} | {fmt(row['f1'])} | "
                         f"{row['support']} |")
    conf = m.get("confusion")
    if conf and len(conf["labels"]) <= 12:
        cols = conf.get("columns") or conf["labels"]
        lines += ["", "confusion (rows: expected, columns: predicted)", "",
                  "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for label, row in zip(conf["labels"], conf["matrix"]):
            lines.append(f"| **{label}** | " + " | ".join(str(x) for x in row) + " |")
    if doc.get("run_id"):
        lines += ["", f"run `{doc['run_id']}`"]
    return "\n".join(lines) + "\n"

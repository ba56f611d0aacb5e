"""The README's demo figures, from one run of `honed demo --json`: per-stage wall time, each model's primary
metric with its CI, the gate, the shipped rung, the training throughput.

Runs the demo in a fresh HONED_HOME (no cached responses) and a fresh HONED_MODELS (the GGUF is dequantized into
its checkpoint folder during the run, once): a fresh clone's first run, unless `--from FILE` reads the JSON of a
run already made. Prints the markdown the README carries and, with `--json`, keeps the figures.

    .venv/bin/python bench/demo_figures.py --json /tmp/demo.json          # ~15 minutes on 2 cores
    .venv/bin/python bench/demo_figures.py --from /tmp/demo.json          # just the markdown
    .venv/bin/python bench/demo_figures.py --public banking77-none --time-budget 30m --json /tmp/b77.json

`--public NAME` writes the task with `honed data public NAME --from ../shared/data` (found relative to this
repository) and runs the same loop on it; `--task DIR` runs it on any task folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—"


def metrics_table(d: dict[str, Any]) -> str:
    """Every metric of every model of the run (an extraction's entity F1, relation F1, valid-JSON rate...)."""
    models = [("base, GGUF via llama.cpp", d["base_gguf"]), ("base, transformers (gate)", d["base"]),
              ("tuned, transformers (gate)", d["tuned"])]
    models += [(f"tuned {q}, GGUF{' (shipped)' if q == d['recommended'] else ''}", r) for q, r in d["rungs"].items()]
    names = sorted({k for _, m in models for k in m.get("metrics") or {}})
    if len(names) < 2:
        return ""
    rows = [f"| model | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for label, m in models:
        cells = []
        for k in names:
            v = (m.get("metrics") or {}).get(k)
            cells.append("—" if v is None else f"{v['value']:.3f} {_ci(v.get('ci'))}".strip())
        rows.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(rows)


def markdown(d: dict[str, Any]) -> str:
    m = d["primary_metric"]
    sec = d["seconds"]
    tr = d["training"]
    rows = [f"| base, GGUF via llama.cpp | {d['base_gguf']['value']:.3f} | {_ci(d['base_gguf']['ci'])} |",
            f"| base, transformers (gate) | {d['base']['value']:.3f} | {_ci(d['base']['ci'])} |",
            f"| tuned, transformers (gate) | {d['tuned']['value']:.3f} | {_ci(d['tuned']['ci'])} |"]
    rows += [f"| tuned {q}, GGUF via llama.cpp{' (shipped)' if q == d['recommended'] else ''} | "
             f"{r['value']:.3f} | {_ci(r['ci'])} |" for q, r in d["rungs"].items()]
    stages = " · ".join(f"{k} {v:.0f} s" for k, v in sec.items() if k not in ("total", "wall"))
    return "\n".join([
        f"| {d['task']}: {m} on the {d['n_test_items']}-item locked test | value | 95% CI |", "|---|---:|---|", *rows,
        "",
        f"Gate {d['gate']['status']} (threshold {d['gate']['threshold']:.3f}; the task's bar "
        f"{d['gate']['min_value']}; paired CI of the difference {_ci(d['difference_ci'])}). "
        f"Wall time {sec.get('wall', sec['total']):.0f} s ({stages}). Training: {tr['steps']} steps in "
        f"{tr['seconds']:.0f} s at {tr['tokens_per_s']} real tokens/s on the `{tr['prompt']}` prompt, "
        f"checkpoint of step {tr['best_step']} chosen by val {m}.",
        *([f"\n{table}"] if (table := metrics_table(d)) else []),
        *([f"\nValidation curve (step: val {m}): " + ", ".join(f"{v['step']}: {v['metric']:.3f}" for v in curve)]
          if (curve := tr.get("curve")) else []),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="source", type=Path, help="a `honed demo --json` file to render")
    ap.add_argument("--json", type=Path, help="where to keep the run's figures")
    ap.add_argument("--out", type=Path, help="the demo's --out folder (default: a temporary one)")
    ap.add_argument("--task", type=Path, help="a task folder (default: the bundled examples/classify)")
    ap.add_argument("--public", help="a public data set to turn into the task (banking77-none, restaurant8k)")
    ap.add_argument("--time-budget", help="the demo's --time-budget (default: the demo's)")
    ap.add_argument("--max-steps", help="the demo's --max-steps")
    ap.add_argument("--eval-every", help="the demo's --eval-every")
    a = ap.parse_args()
    if a.source:
        doc = json.loads(a.source.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            target = a.json or Path(tmp) / "demo.json"
            env = {**os.environ, "HONED_HOME": str(Path(tmp) / "home"), "HONED_MODELS": str(Path(tmp) / "models")}
            cmd = [sys.executable, "-m", "honed", "demo", "--json", str(target), "--out",
                   str(a.out or Path(tmp) / "demo-out")]
            task = a.task
            if a.public:
                task = Path(tmp) / a.public
                data = Path(__file__).resolve().parents[2] / "shared" / "data"
                subprocess.run([sys.executable, "-m", "honed", "data", "public", a.public, "--from", str(data),
                                "--out", str(task)], env=env, check=True)
            cmd += ["--task", str(task)] if task else []
            cmd += ["--time-budget", a.time_budget] if a.time_budget else []
            cmd += ["--max-steps", a.max_steps] if a.max_steps else []
            cmd += ["--eval-every", a.eval_every] if a.eval_every else []
            subprocess.run(cmd, env=env, check=True)
            doc = json.loads(target.read_text())
    print(markdown(doc))


if __name__ == "__main__":
    main()

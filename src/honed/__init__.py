"""honed: specialize small local LLMs for narrow structured tasks, and prove every step with honest numbers.

The public API re-exports each stage's typed function; they are imported on first use, so `import honed`
(and `honed --help`) stays instant. The loop's stages — `plan`, `bakeoff`, `tune`, `gate`, `export` — are
functions here; their packages are named by activity (`honed.gating`, `honed.exporting`), so that importing a
package never puts a module where a stage function is expected (`import honed.gating.run` sets the attribute
`honed.gating`, never `honed.gate`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_task": "honed.task.spec",
    "Task": "honed.task.spec",
    "load_items": "honed.task.data",
    "build_messages": "honed.task.prompt",
    "build_request": "honed.task.prompt",
    "render_chat": "honed.task.prompt",
    "open_backend": "honed.backends",
    "evaluate_task": "honed.evaluate.runner:evaluate",  # `honed.evaluate` is the package
    "EvalResult": "honed.evaluate.runner",
    "compare_runs": "honed.evaluate.compare",
    "parse_arm": "honed.evaluate.bakeoff",
    "run_arms": "honed.evaluate.bakeoff",
    "analyse": "honed.evaluate.bakeoff",
    "bakeoff": "honed.evaluate.bakeoff",
    "BakeoffDocument": "honed.evaluate.bakeoff_document",
    "EvalDocument": "honed.evaluate.document",
    "read_eval_run": "honed.evaluate.document",
    "quantize": "honed.exporting.quantize",
    "export": "honed.exporting.export",
    "Package": "honed.exporting.package",
    "verify": "honed.exporting.verify",
    "VerifyResult": "honed.exporting.verify",
    "plan": "honed.train.plan_task",
    "TaskPlan": "honed.train.plan_task",
    "plan_training": "honed.train.plan",
    "plan_serving": "honed.train.plan",
    "tune": "honed.train.sft",
    "TuneSummary": "honed.train.summary",
    "TuneConfig": "honed.train.config",
    "gate": "honed.gating.run",
    "GateResult": "honed.gating.run",
    "GateDocument": "honed.gating.document",
    "Manifest": "honed.exporting.package",
    "ChatFormat": "honed.task.chat",
    "monitor_package": "honed.monitor.run:monitor",  # `honed.monitor` is the package, as with evaluate_task
    "MonitorReport": "honed.monitor.run",
    "serve_model": "honed.serve:serve",  # `honed.serve` is the package, as with evaluate_task
    "ServeConfig": "honed.serve.config",
    "split_task": "honed.data.split",
    "assert_not_locked": "honed.data.lock",
    "HonedError": "honed.errors",
    "UserError": "honed.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'honed' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr or name)


def __dir__() -> list[str]:
    return __all__

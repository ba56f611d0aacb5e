"""Whole stage documents for unit tests that plant run folders: an eval run's `result.json` and a tune run's
`summary.json`, valid against their typed models, with the keys a test cares about overridden."""

from __future__ import annotations

import copy
from typing import Any

_PARTS = {"model", "data", "settings", "latency_ms", "ttft_ms", "selection"}
"""Sub-documents that `over` updates key by key; every other key (metrics, ci, ...) it replaces whole."""


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = {**out[key], **value} if key in _PARTS else value
    return out


EVAL = {
    "honed_version": "0.1.0", "run_id": "eval-1", "task": "mini", "kind": "classify", "split": "test",
    "model": {"name": "tiny", "backend": "llamacpp", "path": None, "sha256": None, "prompt_format": "chat_template",
              "details": {}},
    "data": {"path": None, "file_sha256": None, "items_sha256": "d" * 64},
    "settings": {"max_tokens": 16, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": [], "think": None,
                 "constrained": True, "repeats": 1, "concurrency": 1, "batch": 1, "prompt": "base"},
    "n_items": 4, "n_responses": 4, "primary_metric": "macro_f1",
    "metrics": {"accuracy": 0.5, "macro_f1": 0.5}, "ci": {}, "failures": {"wrong_answer": 2}, "consistency": None,
    "latency_ms": {"p50": 10.0, "p95": 20.0, "mean": 12.0}, "ttft_ms": {"p50": None, "p95": None, "mean": None},
    "tokens_per_s": 90.0, "items_per_s": 3.0, "prompt_tokens": {"mean": 100.0}, "completion_tokens": {"mean": 3.0},
    "peak_memory_mb": 512.0, "memory_source": "process peak RSS", "cache": {"hits": 0, "misses": 4}, "wall_s": 1.5,
}

SUMMARY = {
    "run_id": "t1", "run_dir": "/runs/t1", "method": "lora", "status": "complete", "adapter": "/runs/t1/best",
    "selection": {"metric": "macro_f1", "base_value": 0.1, "best_step": 2, "best_value": 0.8,
                  "stopped_by": "max_steps/epochs", "why": "chosen by the val macro_f1", "collapsed": False,
                  "evals": 1},
    "train_seconds": 1.0, "steps": 3, "train_tokens_per_s": 10.0, "train_loss": 0.5, "encode": {}, "warnings": [],
    "alarms": [], "prompt": "base",
}


def eval_document(**over: Any) -> dict[str, Any]:
    """A `result.json` object as `honed eval` writes it; `over` sets keys (see `_PARTS`)."""
    return _merge(EVAL, over)


def tune_summary(**over: Any) -> dict[str, Any]:
    """A `summary.json` object as `honed tune` writes it."""
    return _merge(SUMMARY, over)

"""Re-gating without reloading the models: `RUN/gate_cache.json` remembers, per fingerprint of everything that
decides the answers, which eval run folders and general-prompt losses the gate measured.

The response cache already makes a repeated evaluation free, but loading a model through transformers is not
(tens of seconds on a small CPU). A re-run with the same model files, adapter, test items, prompt/generation
settings and check set — e.g. to add `--vs`, or after changing an acceptance threshold — reads the recorded
eval runs instead and only recomputes the statistics and checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from honed import __version__
from honed.evaluate.runner import EvalResult
from honed.store import canonical_json, write_json_atomic
from honed.task.data import Item, items_hash
from honed.task.spec import Task

CACHE_FILE = "gate_cache.json"


@dataclass
class Side:
    """One evaluated side of the gate: its eval run, its general-prompt loss, the base weights' sha256."""

    result: EvalResult
    nll: dict[str, Any]
    base_sha256: str | None


def model_sha256(model: str) -> str:
    """sha256 of a base model as the transformers backend reports it: the GGUF file's, or the checkpoint's."""
    from honed.backends.models import file_sha256, resolve_gguf
    from honed.backends.transformers import checkpoint_sha256

    p = Path(model)
    if p.is_dir():
        return checkpoint_sha256(p)
    return file_sha256(p if p.is_file() else resolve_gguf(model))


def fingerprint(task: Task, model_sha: str, adapter: Path, items: list[Item]) -> str:
    """sha256 over the inputs that decide the answers and the losses (acceptance thresholds excluded)."""
    from honed.backends.transformers import adapter_sha256

    check_set = resources.files("honed").joinpath("resources/general_check.jsonl").read_bytes()
    parts = {
        "model": model_sha,
        "adapter": adapter_sha256(adapter),
        "items": items_hash(items),
        "task": canonical_json(task.spec.model_dump(mode="json", exclude={"acceptance", "bakeoff", "description"})),
        "prompt": task.prompt,
        "check_set": hashlib.sha256(check_set).hexdigest(),
        "honed": __version__,
    }
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def _entry(side: Side) -> dict[str, Any]:
    return {"eval_run_dir": str(side.result.run_dir), "nll": side.nll, "base_sha256": side.base_sha256}


def save(run: Path, key: str, base: Side, tuned: Side) -> None:
    path = run / CACHE_FILE
    entries = _read(path)
    entries[key] = {"base": _entry(base), "tuned": _entry(tuned)}
    write_json_atomic(path, entries)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}  # a missing or damaged cache only costs a re-evaluation


def load(run: Path, key: str, items: list[Item]) -> tuple[Side, Side] | None:
    """The recorded sides for this fingerprint, if their eval run folders are still whole."""
    from honed.errors import UserError
    from honed.evaluate.document import read_eval_run

    entry = _read(run / CACHE_FILE).get(key)
    if not entry:
        return None
    sides = []
    for name in ("base", "tuned"):
        e = entry[name]
        try:
            run = read_eval_run(Path(e["eval_run_dir"]))
        except (UserError, OSError, TypeError, KeyError):
            return None
        if [r.id for r in run.records] != [i.id for i in items]:
            return None
        result = EvalResult(document=run.document, records=run.records, run_id=run.document.run_id,
                            run_dir=run.run_dir)
        sides.append(Side(result, e["nll"], e.get("base_sha256")))
    return sides[0], sides[1]

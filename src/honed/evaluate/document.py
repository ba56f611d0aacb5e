"""An eval run folder, typed: `result.json` (`EvalDocument`, what `honed eval` writes and `--json` prints) and the
one reader of a whole run folder (`read_eval_run`: the document, the per-item records, the task as it was run).

Compare, the bake-off, the gate, export, its documents and the demo all read eval runs through here, so a key
renamed or dropped is an error where it is written, and a vanished or broken run folder is the same clear error
whichever stage meets it. The JSON keys are the contract other tools read: they are named exactly as written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from honed.errors import UserError
from honed.evaluate.scoring import ItemRecord
from honed.task.spec import Task

RESULT_FILE = "result.json"
ITEMS_FILE = "items.jsonl"

_RECORD_FIELDS = {f.name for f in fields(ItemRecord)}


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalModel(_Doc):
    """The model that answered, as the backend reported it."""

    name: str
    backend: str
    path: str | None = None
    sha256: str | None = None
    prompt_format: str | None = None
    """"chat_template" or "plain" (a base model without a template)."""
    details: dict[str, Any] = {}


class EvalData(_Doc):
    path: str | None
    file_sha256: str | None
    items_sha256: str


class Percentiles(_Doc):
    p50: float | None
    p95: float | None
    mean: float | None


class Mean(_Doc):
    mean: float


class CacheCounts(_Doc):
    hits: int
    misses: int


class EvalDocument(_Doc):
    """One evaluation: the model, the items, the settings, the task metrics with their CIs, failures, timings."""

    honed_version: str
    run_id: str | None
    """None for an evaluation that wrote no run folder (the gate's reuse, `write_run=False`)."""
    task: str
    kind: str
    split: str
    model: EvalModel
    data: EvalData
    settings: dict[str, Any]
    """The sampling settings (max_tokens, temperature, top_p, seed, stop, think) and constrained, repeats,
    concurrency, batch, prompt."""
    n_items: int
    n_responses: int
    primary_metric: str
    metrics: dict[str, Any]
    """The task kind's report: accuracy, macro_f1, per_class, confusion, field and entity F1s, rates, counts."""
    ci: dict[str, Any]
    failures: dict[str, int]
    consistency: dict[str, Any] | None
    latency_ms: Percentiles
    ttft_ms: Percentiles
    tokens_per_s: float | None
    items_per_s: float | None
    prompt_tokens: Mean
    completion_tokens: Mean
    peak_memory_mb: float | None
    memory_source: str
    gpu_memory_mb: float | None = None
    """Only where nvidia-smi saw this process."""
    cache: CacheCounts
    wall_s: float

    @property
    def constrained(self) -> bool:
        """Whether the answers were decoded under the task's answer space."""
        return bool(self.settings.get("constrained"))

    @property
    def primary(self) -> float | None:
        """The task's primary metric."""
        value = self.metrics.get(self.primary_metric)
        return value if isinstance(value, int | float) else None

    def metric(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return value if isinstance(value, int | float) else None

    def as_json(self) -> dict[str, Any]:
        """The JSON object `result.json` holds."""
        return self.model_dump(mode="python", exclude_unset=True)


@dataclass(frozen=True)
class EvalRun:
    """A finished eval run folder: its document and its per-item records (every repeat, in file order)."""

    run_dir: Path
    document: EvalDocument
    records: list[ItemRecord]

    @property
    def run_id(self) -> str:
        return self.document.run_id or self.run_dir.name

    @property
    def first(self) -> list[ItemRecord]:
        """Repeat 0 only: one record per item, in file order."""
        return [r for r in self.records if r.repeat == 0]

    def by_id(self) -> dict[str, ItemRecord]:
        """Repeat 0's records by item id."""
        return {r.id: r for r in self.first}

    @property
    def backend(self) -> str:
        return self.document.model.backend

    def task(self) -> Task:
        """The task as it was run (the run folder's `task.json`, rooted where the run's manifest says)."""
        from honed.task.spec import TaskSpec

        spec = TaskSpec.model_validate(_read_json(self.run_dir / "task.json", "the task `honed eval` ran"))
        manifest = _read_json(self.run_dir / "manifest.json", "the eval run's manifest")
        return Task(spec, Path(manifest.get("task_dir", self.run_dir)))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found ({what}); re-run the evaluation to write it again") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); {what}") from None


def read_eval_document(path: Path) -> EvalDocument:
    """A `result.json` (or a `honed eval --json` file), or a clear error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no eval result (the run did not finish, or its folder is gone; re-run it)")
    try:
        return EvalDocument.model_validate(_read_json(path, "expected what `honed eval` writes"))
    except ValidationError as exc:
        from honed.task.spec import format_validation_errors

        raise UserError(format_validation_errors(path, exc, "not an eval result `honed eval` wrote")) from None


def read_eval_run(run_dir: str | Path) -> EvalRun:
    """The one reader of an eval run folder: `items.jsonl` and `result.json`, or a clear error naming the file
    that is absent or broken."""
    run_dir = Path(run_dir)
    path = run_dir / ITEMS_FILE
    if not path.is_file():
        raise UserError(f"{path}: eval run items not found; the run did not finish or its folder is gone "
                        "(re-run the evaluation; `honed gate RUN` evaluates a gate's sides again)")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            records.append(ItemRecord(**{k: v for k, v in row.items() if k in _RECORD_FIELDS}))
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise UserError(f"{path}:{n}: not an ItemRecord line ({exc})") from None
    return EvalRun(run_dir, read_eval_document(run_dir / RESULT_FILE), records)


__all__ = ["ITEMS_FILE", "RESULT_FILE", "EvalDocument", "EvalRun", "read_eval_document", "read_eval_run"]

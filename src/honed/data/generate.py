"""`generate`: a teacher model writes new examples, the filters keep the good ones; `filter_file` re-filters.

    inputs (from seed examples, or grounded in source documents)
      → input_valid → near_duplicate → [teacher labels each input k times] → schema → consistency → grounding
      → optional repair: answers rejected by schema or grounding are sent back with the reason, once
      → kept

Every run writes a run folder (`<HONED_HOME>/runs/<id>-datagen-<task>/`): config.json, candidates.jsonl (every
candidate and its fate), kept.jsonl (task items), survival.json and survival.md, manifest.json.
"""

from __future__ import annotations

import json
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from honed import __version__
from honed.backends.base import Backend
from honed.data.dedup import DEFAULT_THRESHOLD, item_text
from honed.data.filters import (
    REPAIRABLE,
    Candidate,
    Stage,
    Survival,
    answer_filters,
    input_valid,
    near_duplicate,
)
from honed.data.io import input_fields, item_row, read_rows, write_items, write_jsonl
from honed.data.teacher import (
    Teacher,
    chunk_documents,
    input_request,
    labelling_requests,
    parse_input,
    read_answers,
)
from honed.data.warnings import class_counts
from honed.display import Bar
from honed.errors import DataError, TaskError, UserError
from honed.store import Store, sha256_text, write_json_atomic, write_text_atomic
from honed.task.data import Item, load_items
from honed.task.spec import SPLITS, Task
from honed.types import Sampling


class GenerateConfig(BaseModel):
    """Settings of one generate run."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    n: int = Field(default=20, ge=1)
    """Inputs to write (documents: chunks to use)."""
    k: int = Field(default=3, ge=1)
    """Answers asked per input, for self-consistency."""
    min_agree: int = Field(default=2, ge=1)
    """How many of the k answers must agree (m)."""
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    """Labelling temperature when k > 1 (k = 1 is greedy)."""
    input_temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    """Temperature for writing inputs: high enough for variety."""
    max_input_tokens: int = Field(default=96, gt=0)
    """Token budget of one written input."""
    shots: int = Field(default=3, ge=0)
    """Seed examples shown per input request."""
    seed: int = 0
    """Base seed; request i uses seed + i."""
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0.0, le=1.0)
    """Near-duplicate Jaccard threshold."""
    repair: bool = False
    """One round of repair: send rejected answers back with the reason."""
    constrained: bool = False
    """Constrain the teacher's answers to the answer space (fewer schema rejections, no better labels)."""
    verbatim: bool = False
    """Documents: use each chunk itself as the input (the teacher only labels it)."""
    chunk_chars: int = Field(default=400, ge=40)
    """Documents: longest chunk, in characters."""

    @model_validator(mode="after")
    def _m_le_k(self) -> GenerateConfig:
        if self.min_agree > self.k:
            raise ValueError(f"min_agree (m = {self.min_agree}) cannot exceed k = {self.k}")
        return self


def generate_config(**settings: Any) -> GenerateConfig:
    """A GenerateConfig, with every invalid setting reported in one UserError (for the command line)."""
    try:
        return GenerateConfig(**settings)
    except ValidationError as exc:
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise UserError("invalid generate settings: " + "; ".join(parts)) from None


@dataclass
class GenerateResult:
    candidates: list[Candidate]
    kept: list[Item]
    survival: Survival
    run_id: str | None = None
    run_dir: Path | None = None


def _existing(task: Task, seeds: Sequence[Item], skip: Path | None = None) -> list[tuple[str, str]]:
    """What a new example must not resemble: the seeds and every split (the locked test set above all), but
    not the file `skip` (filtering a split's own file must not find each item a duplicate of itself)."""
    out = [(f"seed {s.id}", item_text(s.inputs)) for s in seeds]
    for split in SPLITS:
        try:
            path = task.split_path(split)
        except TaskError:
            continue
        if path.exists() and (skip is None or path.resolve() != Path(skip).resolve()):
            out += [(f"{split} {i.id}", item_text(i.inputs)) for i in load_items(task, split)]
    return out


def _write_inputs(
    task: Task,
    teacher: Teacher,
    cfg: GenerateConfig,
    fields: list[str],
    seeds: list[Item],
    chunks: list[tuple[str, str]],
) -> list[Candidate]:
    types: dict[str, type] = {}
    for f in fields:
        kinds = {type(s.inputs[f]) for s in seeds if f in s.inputs}
        if len(kinds) == 1:
            types[f] = kinds.pop()
    cands = []
    for i in range(cfg.n):
        origin, chunk = chunks[i % len(chunks)] if chunks else ("seeds", None)
        cid = f"gen-{cfg.seed}-{i + 1:04d}"
        if chunk is not None and cfg.verbatim:
            cands.append(Candidate(cid, {fields[0]: chunk}, source=chunk, origin=origin))
            teacher.advance(1)
            continue
        shots = random.Random(cfg.seed + i).sample(seeds, min(cfg.shots, len(seeds)))
        sampling = Sampling(
            max_tokens=cfg.max_input_tokens, temperature=cfg.input_temperature, seed=cfg.seed + i
        )
        resp = teacher.ask([input_request(task, fields, shots, sampling, chunk)])[0]
        inputs, problem = parse_input(fields, resp, types)
        cands.append(
            Candidate(
                cid, inputs, source=chunk or "", origin=origin, raw_input=resp.text, input_problem=problem
            )
        )
    return cands


def _label(
    task: Task,
    teacher: Teacher,
    cands: list[Candidate],
    cfg: GenerateConfig,
    seed: int,
    feedback: dict[str, tuple[str, str]] | None = None,
) -> None:
    for c in cands:
        reqs = labelling_requests(
            task,
            c,
            cfg.k,
            cfg.temperature,
            seed,
            cfg.constrained,
            None if feedback is None else feedback[c.id],
        )
        read_answers(task, c, teacher.ask(reqs))


def generate(
    task: Task,
    backend: Backend,
    *,
    seeds: Sequence[Item] = (),
    documents: Sequence[Path] = (),
    config: GenerateConfig | None = None,
    store: Store | None = None,
    progress: bool = False,
    out: Path | None = None,
) -> GenerateResult:
    """Write up to `config.n` new examples with `backend` as teacher; keep those every filter passes."""
    cfg = config or GenerateConfig()
    if task.kind == "generate":
        raise DataError(
            f"task {task.name!r} is a generate task: its answers are free text, which the filters "
            "cannot validate; write examples by hand or harvest them"
        )
    fields = input_fields(task)
    seeds = list(seeds)
    chunks = chunk_documents(documents, cfg.chunk_chars) if documents else []
    if chunks and len(fields) != 1:
        raise DataError(
            f"source documents need a task with one input field; {task.name!r} has {fields}: "
            "generate from seed examples instead (--seeds)"
        )
    if not chunks and not seeds:
        raise DataError(
            "nothing to generate from: give seed examples (--seeds FILE, or the task's train split) "
            "or source documents (--docs FILE)"
        )
    own_store = store is None
    store = store or Store()
    bar = Bar(progress, f"teacher {backend.info.name}", unit="requests")
    teacher = Teacher(backend, store, bar.advance)
    try:
        bar.grow(cfg.n)
        cands = _write_inputs(task, teacher, cfg, fields, seeds, chunks)
        stages: list[Stage] = []
        # written inputs should look like the seeds: from half the shortest to three times the longest
        sizes = [len(item_text(s.inputs)) for s in seeds] if seeds and not chunks else []
        alive, st = input_valid(
            cands, fields, 3 * max(sizes) if sizes else None, min(sizes) // 2 if sizes else 1
        )
        stages.append(st)
        alive, st = near_duplicate(alive, _existing(task, seeds), cfg.threshold)
        stages.append(st)
        bar.grow(len(alive) * cfg.k)
        _label(task, teacher, alive, cfg, cfg.seed)
        kept, answer_stages = answer_filters(task, alive, cfg.min_agree)
        stages += answer_stages
        repair = None
        if cfg.repair:
            # Disagreement is not repaired: asking again until k answers agree would defeat self-consistency.
            rejected = [c for c in alive if c.rejected_at in REPAIRABLE]
            feedback = {c.id: (c.texts[0] if c.texts else "", c.reason or "") for c in rejected}
            bar.grow(len(rejected) * cfg.k)
            _label(task, teacher, rejected, cfg, cfg.seed + 100, feedback)
            for c in rejected:
                c.rejected_at = c.reason = None
            recovered, _ = answer_filters(task, rejected, cfg.min_agree)
            for c in recovered:
                c.repaired = True
            kept += recovered
            repair = {"tried": len(rejected), "recovered": len(recovered)}
    finally:
        bar.close()
    kept_items = [c.item() for c in kept]
    survival = Survival(len(cands), stages, len(kept_items), repair, *_class_check(task, kept_items))
    result = GenerateResult(cands, kept_items, survival)
    _write_run(task, backend, cfg, result, store, seeds, documents, teacher)
    if out is not None:
        write_items(task, out, kept_items)
    if own_store:
        store.close()
    return result


def _class_check(task: Task, items: list[Item]) -> tuple[dict[str, int], list[str]]:
    """Kept items per class, and a warning when one class dominates: every filter checks an example alone, so
    a teacher that leans to one answer (the tiny default leans to NONE) passes them all, and a student
    trained on the result collapses onto that answer (seed 000)."""
    counts = {c: n for c, n in class_counts(task, items).items() if n}
    if len(items) < 5 or not counts:
        return counts, []
    top, n = max(counts.items(), key=lambda kv: kv[1])
    if n / len(items) < 0.8:
        return counts, []
    warning = (
        f"{n} of the {len(items)} kept items ({n / len(items):.0%}) are {top}: the teacher leans to one "
        "answer; review them before training, or a fine-tune learns to give it to everything (seed 000)"
    )
    return counts, [warning]


def _write_run(
    task: Task,
    backend: Backend,
    cfg: GenerateConfig,
    result: GenerateResult,
    store: Store,
    seeds: Sequence[Item],
    documents: Sequence[Path],
    teacher: Teacher,
) -> None:
    run_id, run_dir = store.new_run_dir("datagen", task.name)
    result.run_id, result.run_dir = run_id, run_dir
    write_json_atomic(run_dir / "config.json", cfg.model_dump())
    write_jsonl(run_dir / "candidates.jsonl", [c.to_json() for c in result.candidates])
    write_jsonl(run_dir / "kept.jsonl", [item_row(task, i) for i in result.kept])
    write_json_atomic(run_dir / "survival.json", result.survival.to_json())
    write_text_atomic(run_dir / "survival.md", result.survival.markdown())
    write_json_atomic(
        run_dir / "manifest.json",
        {
            "run_id": run_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "task": task.name,
            "task_dir": str(task.root),
            "teacher": {
                "name": backend.info.name,
                "backend": backend.info.backend,
                "sha256": backend.info.sha256,
            },
            "seeds": {"n": len(seeds), "sha256": sha256_text(json.dumps([item_row(task, s) for s in seeds]))},
            "documents": [
                {"path": str(p), "sha256": sha256_text(Path(p).read_text(encoding="utf-8"))}
                for p in documents
            ],
            "requests": {"asked": teacher.asked, "cached": teacher.cached},
            "versions": {"honed": __version__, "python": platform.python_version()},
        },
    )
    store.record_run(
        run_id,
        "datagen",
        task.name,
        backend.info.name,
        backend.info.sha256,
        run_dir,
        "complete",
        {"generated": result.survival.generated, "kept": result.survival.kept},
    )


def _candidate(task: Task, row: dict[str, Any], where: str) -> Candidate:
    """A row of generate's candidates.jsonl, or a task item (its answer is the one answer)."""
    if "answers" in row and "inputs" in row:
        return Candidate(
            id=str(row.get("id")),
            inputs=row["inputs"],
            source=row.get("source") or "",
            origin=row.get("origin") or where,
            answers=list(row["answers"]),
            causes=list(row.get("causes") or [None] * len(row["answers"])),
            texts=list(row.get("texts") or []),
            input_problem=row.get("input_problem"),
        )
    row = dict(row)
    cid = str(row.pop(task.spec.data.id_field, where))
    expected = row.pop(task.spec.data.expected_field, None)
    return Candidate(id=cid, inputs=row, origin=where, answers=[expected], causes=[None])


def filter_file(
    task: Task,
    path: Path,
    *,
    min_agree: int = 1,
    threshold: float = DEFAULT_THRESHOLD,
    out: Path | None = None,
) -> tuple[list[Item], Survival, list[Candidate]]:
    """Run the filters (no teacher) on candidates or items in a file, against the task's current splits."""
    cands = [_candidate(task, row, f"{path}:{line}") for line, row in read_rows(path, "jsonl")]
    fields = input_fields(task)
    alive, st1 = input_valid(cands, fields)
    alive, st2 = near_duplicate(alive, _existing(task, [], skip=path), threshold)
    kept, stages = answer_filters(task, alive, min_agree)
    items = [c.item() for c in kept]
    if out is not None:
        write_items(task, out, items)
    return items, Survival(len(cands), [st1, st2, *stages], len(items)), cands

"""The delivery package: one folder a newcomer can run without calling anyone (seed 004).

Layout (every path relative to the package root; `manifest.json` holds the sha256 of every other file):

    {task}-{base}-{version}-{quant}.gguf   one per rung of the quant ladder (F16, Q8_0, Q4_K_M, ...)
    adapter/                              the unmerged PEFT adapter
    Modelfile                             Ollama, for the recommended rung
    usage.md, benchmarks.md               for people
    task/honed.toml, task/data/test.jsonl the task (prompt builder input) and its locked eval set
    anchors.jsonl                         anchor items: {"id", "inputs", "expected", "answer"} per line
    manifest.json                         see `Manifest`

`serve` loads the recommended rung and builds prompts from `task/`; `monitor` re-runs the anchors against
`acceptance`; `verify` re-hashes every file and re-runs the anchors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from honed.backends.models import file_sha256
from honed.errors import DataError, UserError
from honed.store import write_json_atomic

MANIFEST = "manifest.json"
ANCHORS = "anchors.jsonl"
TASK_DIR = "task"
FORMAT_VERSION = 1


class Rung(BaseModel):
    """One quantization of the exported model, re-evaluated on the locked test."""

    model_config = ConfigDict(extra="forbid")
    quant: str
    file: str
    """Path of the GGUF, relative to the package root."""
    metrics: dict[str, Any] = {}
    """Primary metric, P50/P95 latency, memory, cost per 1K, agreement with F16."""


class Acceptance(BaseModel):
    """What the shipped model must keep doing: the gate's threshold on the primary metric."""

    model_config = ConfigDict(extra="forbid")
    primary_metric: str
    min_value: float
    """The lowest value of the primary metric that still passes (base × (1 + min relative improvement))."""
    max_quant_drop: float | None = None
    """The ladder's tolerance: how far below F16 a rung may score."""
    source: str | None = None
    """Where `min_value` comes from (the gate's threshold, or the recommended rung's score minus the drop)."""


class Manifest(BaseModel):
    """`manifest.json`: what the package holds and how each part was measured; read by `load_package` only."""

    model_config = ConfigDict(extra="forbid")
    format_version: int = FORMAT_VERSION
    task: str
    kind: str
    version: str
    base_model: dict[str, Any]
    """{"name": alias or path, "sha256": of the base GGUF}."""
    rungs: list[Rung]
    recommended: str
    """Quant of the rung to serve (the smallest within the gate's tolerance of F16)."""
    acceptance: Acceptance
    prompt: str = "base"
    """Which template of `task/honed.toml` the model was trained and is served with: "base" (`template`) or
    "tuned" (`tuned_template`). Serve, monitor and verify build prompts with it."""
    gate: dict[str, Any] = {}
    """The gate's verdict: the `gate.json` document as `honed gate` wrote it, plus `forced: true` when export ran
    despite a failing gate (usage.md reads its CIs and eval run folders)."""
    tune: dict[str, Any] = {}
    """The tune run behind the package: {"run_id", "config": its config.json}; usage.md's how-to-retrain."""
    hashes: dict[str, str] = {}
    """Data and config hashes (train, val, test, tune config)."""
    files: dict[str, str] = {}
    """sha256 of every file in the package but the manifest."""
    run_dir: str | None = None
    """The tune run folder the package was exported from."""
    created: str | None = None
    """When export wrote the package (ISO 8601, UTC)."""
    ladder: dict[str, Any] = {}
    """The quant ladder's choice: {"recommended", "why", "tolerance", "merged": the merged model's eval}."""
    round_trip: dict[str, Any] | None = None
    """What the template round trip checked (`honed.exporting.template.round_trip`)."""
    converter: dict[str, Any] | None = None
    """How the F16 GGUF was made (the converter, its source and timings)."""
    ollama_model: str | None = None
    """The name `ollama create` gives the model."""
    ollama: dict[str, Any] | None = None
    """What `ollama create` did (or why it did not run)."""
    notes: list[str] = []
    """What a reader of the package should know (e.g. benchmarks.md has only the ladder)."""
    stages: dict[str, float] = {}
    """Seconds per export stage."""


@dataclass(frozen=True)
class Anchor:
    id: str
    inputs: dict[str, Any]
    expected: Any
    answer: Any
    """What the recommended rung answered at export time."""


@dataclass(frozen=True)
class Package:
    root: Path
    manifest: Manifest

    @property
    def task_dir(self) -> Path:
        return self.root / TASK_DIR

    def task(self) -> Any:
        """The packaged task, building prompts with the template the model was trained on."""
        from honed.task.spec import load_task

        return load_task(self.task_dir, prompt=self.manifest.prompt)

    def gguf(self, quant: str | None = None) -> Path:
        """The GGUF of a rung (default: the recommended one)."""
        want = (quant or self.manifest.recommended).upper()
        for rung in self.manifest.rungs:
            if rung.quant.upper() == want:
                return self.root / rung.file
        have = ", ".join(r.quant for r in self.manifest.rungs)
        raise UserError(f"{self.root}: no {want} rung in this package (it has {have})")

    def anchors(self) -> list[Anchor]:
        """The anchor items, read through the bounded reader: a hostile line is one DataError naming its line."""
        from honed.data.reader import read_jsonl

        path = self.root / ANCHORS
        what = 'expected one {"id", "inputs", "expected", "answer"} object per line'
        out = []
        for n, row in read_jsonl(path, what):
            try:
                out.append(Anchor(str(row["id"]), dict(row["inputs"]), row["expected"], row.get("answer")))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}:{n}: bad anchor line ({type(exc).__name__}: {exc}); {what}") from None
        return out


def hash_files(root: Path) -> dict[str, str]:
    """sha256 of every regular file under root except the manifest, keyed by POSIX relative path."""
    return {p.relative_to(root).as_posix(): file_sha256(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p != root / MANIFEST}


def write_manifest(root: Path, manifest: Manifest) -> Manifest:
    """Hash every file now in the package and write manifest.json atomically (last step of an export)."""
    manifest = manifest.model_copy(update={"files": hash_files(root)})
    write_json_atomic(root / MANIFEST, manifest.model_dump(mode="json"))
    return manifest


def write_anchors(root: Path, anchors: list[Anchor]) -> None:
    text = "".join(json.dumps({"id": a.id, "inputs": a.inputs, "expected": a.expected, "answer": a.answer},
                              ensure_ascii=False) + "\n" for a in anchors)
    tmp = root / (ANCHORS + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(root / ANCHORS)


def load_package(path: Path) -> Package:
    """Read a package folder's manifest (a clear error when it is not a package)."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise UserError(f"{path}: not a honed package (no {MANIFEST}); make one with `honed export RUN`")
    try:
        manifest = Manifest.model_validate_json(mpath.read_text(encoding="utf-8"))
    except ValidationError as exc:
        from honed.task.spec import format_validation_errors

        raise UserError(format_validation_errors(mpath, exc, "invalid package manifest")) from None
    return Package(path, manifest)


def check_hashes(pkg: Package) -> list[str]:
    """Every difference between the files on disk and the manifest: changed, missing, or unlisted."""
    problems = []
    now = hash_files(pkg.root)
    for rel, sha in pkg.manifest.files.items():
        if rel not in now:
            problems.append(f"{rel}: missing")
        elif now[rel] != sha:
            problems.append(f"{rel}: sha256 {now[rel][:12]}… but the manifest says {sha[:12]}…")
    problems += [f"{rel}: not in the manifest" for rel in now if rel not in pkg.manifest.files]
    return problems

"""`verify(package)`: is this delivery package still what `honed export` wrote, and does it still answer the same?

Three checks, in this order:
1. every file's sha256 against manifest.json (changed, missing, unlisted files): first, and on its own, so a
   tampered GGUF is reported as tampered even when llama.cpp could not load it (a tampered GGUF is never loaded);
2. the task's locked test set (`task/data/test.lock.json`) and the test-set hash in manifest.json `hashes`;
3. the anchor items re-run through a rung (the recommended one by default) with the package's own task prompt
   builder and decoding settings (greedy unless the task says otherwise), each answer compared with the answer
   recorded at export.

Anchors go straight to the backend, never through `evaluate`: eval's response cache would hand back the answers
of the first run and verify nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from honed.errors import HonedError
from honed.export.package import TASK_DIR, Package, check_hashes, load_package
from honed.store import canonical_json

TEST_HASH_KEYS = ("test", "test_items_sha256", "test_file_sha256", "test_sha256")
"""Keys of manifest.json `hashes` that hold the test set's hash (items hash or file sha256)."""


@dataclass
class FileProblem:
    file: str
    issue: str
    """changed | missing | unlisted."""
    detail: str


@dataclass
class AnchorCheck:
    id: str
    expected: Any
    recorded: Any
    """What the rung answered at export (anchors.jsonl)."""
    answer: Any
    """What it answers now."""
    matches: bool
    correct: bool
    cause: str | None
    text: str


@dataclass
class VerifyResult:
    package: str
    quant: str | None
    gguf: str | None
    files: list[FileProblem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Everything else that fails the package: task lock, test-set hash, anchors that could not run."""
    anchors: list[AnchorCheck] = field(default_factory=list)

    @property
    def anchor_accuracy(self) -> float | None:
        return sum(a.correct for a in self.anchors) / len(self.anchors) if self.anchors else None

    @property
    def passed(self) -> bool:
        return (not self.files and not self.problems and bool(self.anchors)
                and all(a.matches for a in self.anchors))

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(status="PASS" if self.passed else "FAIL", anchor_accuracy=self.anchor_accuracy,
                   anchors_matching=sum(a.matches for a in self.anchors), n_anchors=len(self.anchors))
        return doc


def _file_problem(line: str) -> FileProblem:
    rel, _, detail = line.partition(": ")
    issue = "missing" if detail == "missing" else "unlisted" if detail == "not in the manifest" else "changed"
    return FileProblem(rel, issue, detail)


def _same(recorded: Any, answer: Any, text: str) -> bool:
    """The same answer: equal parsed answers (JSON-canonical, so key order does not matter), or, for a string
    recorded where the parse failed both times, the same visible text."""
    if canonical_json(recorded) == canonical_json(answer):
        return True
    return answer is None and isinstance(recorded, str) and recorded.strip() == text.strip()


def _check_task(pkg: Package, result: VerifyResult) -> Any:
    """Load the package's task and its test items (which re-checks the lock); None when they cannot be used."""
    from honed.data.lock import read_lock
    from honed.task.data import items_hash, load_items

    try:
        task = pkg.task()
        items = load_items(task, "test")
    except HonedError as exc:
        result.problems.append(f"task: {exc}")
        return None
    try:
        locked = read_lock(task) is not None
    except HonedError as exc:
        result.problems.append(f"task lock: {exc}")
        locked = True
    if not locked and not any(pkg.manifest.hashes.get(k) for k in TEST_HASH_KEYS):
        result.problems.append(f"{TASK_DIR}/: the test set has neither a lock file nor a hash in manifest.json "
                               "`hashes`, so its content cannot be re-checked")
    test_file = task.split_path("test")
    from honed.backends.models import file_sha256

    now = {items_hash(items), file_sha256(test_file)}
    for key in TEST_HASH_KEYS:
        want = pkg.manifest.hashes.get(key)
        if want and want not in now:
            result.problems.append(f"manifest.json hashes.{key} = {want[:12]}… but the package's test set hashes "
                                   f"to {items_hash(items)[:12]}… (items) / {file_sha256(test_file)[:12]}… (file)")
    return task


def _run_anchors(pkg: Package, task: Any, gguf: Path, backend: str, result: VerifyResult) -> None:
    from honed.backends import open_backend
    from honed.evaluate.runner import sampling_for
    from honed.evaluate.scoring import judge
    from honed.task.data import Item
    from honed.task.prompt import build_request

    try:
        anchors = pkg.anchors()
    except (HonedError, OSError) as exc:
        result.problems.append(f"anchors: {exc}")
        return
    if not anchors:
        result.problems.append("anchors.jsonl: no anchor items, so nothing was re-run")
        return
    # the settings export recorded the anchors with: the task's own (greedy by default; a temperature > 0 is
    # seeded, and llama.cpp's seeded sampling repeats itself, so forcing greedy would only invent mismatches)
    sampling = sampling_for(task, 0)
    constrained = task.spec.generation.constrained
    try:
        with open_backend(backend, str(gguf)) as be:
            for a in anchors:
                item = Item(a.id, a.inputs, a.expected)
                resp = be.generate([build_request(task, item, sampling, constrained=constrained)])[0]
                rec = judge(task, item, 0, resp)
                result.anchors.append(AnchorCheck(a.id, a.expected, a.answer, rec.answer,
                                                  _same(a.answer, rec.answer, rec.text), rec.correct, rec.cause,
                                                  rec.text))
    except HonedError as exc:
        result.problems.append(f"anchors not run: {exc}")
    except (ValueError, RuntimeError, OSError) as exc:  # llama.cpp refuses a file it cannot read
        result.problems.append(f"anchors not run: {gguf.name} could not be loaded ({exc})")


def verify(package: Path, *, backend: str = "llamacpp", quant: str | None = None) -> VerifyResult:
    """Re-check a delivery package: file hashes, the task lock, and the anchors through one rung."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    pkg = load_package(Path(package))  # UserError when it is not a package
    result = VerifyResult(str(pkg.root), None, None)
    result.files = [_file_problem(p) for p in check_hashes(pkg)]
    try:
        gguf = pkg.gguf(quant)
    except HonedError as exc:
        result.problems.append(str(exc))
        return result
    rel = gguf.relative_to(pkg.root).as_posix()
    result.quant = (quant or pkg.manifest.recommended).upper()
    result.gguf = rel
    task = _check_task(pkg, result)
    if task is None:
        return result
    bad = [f for f in result.files if f.file == rel and f.issue in ("changed", "missing")]
    if bad:  # never load a tampered model: its answers would prove nothing, and it may crash llama.cpp
        result.problems.append(f"anchors not run: {rel} failed its hash check ({bad[0].issue})")
        return result
    if rel not in pkg.manifest.files:
        result.problems.append(f"anchors not run: {rel} is not in the manifest, so it is not the exported file")
        return result
    _run_anchors(pkg, task, gguf, backend, result)
    return result


def result_json(result: VerifyResult) -> str:
    return json.dumps(result.as_dict(), ensure_ascii=False, indent=2, default=str)

"""`verify(package)`: is this delivery package still what `honed export` wrote, and does it still answer the same?

Three checks, in this order:
1. every file's sha256 against manifest.json (changed, missing, unlisted files), re-hashed from the bytes (never
   the sha256 cache): first, and on its own, so a tampered GGUF is reported as tampered even when llama.cpp could
   not load it (a tampered GGUF is never loaded); a rung whose path is absolute, leads out of the package or is
   not listed in `files` is refused, never loaded;
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
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from honed.backends.models import file_sha256
from honed.errors import HonedError, UserError
from honed.exporting.package import MANIFEST, TASK_DIR, Package, load_package
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


class PackageFileRefused(UserError):
    """A package file that must not be used: outside the package, not in the manifest, or changed since export."""


def file_problems(pkg: Package) -> list[FileProblem]:
    """Every difference between the files on disk and manifest.json `files`, each file re-hashed from its bytes
    (never from the sha256 cache, which a file edited in place with its mtime restored would fool)."""
    root = pkg.root
    on_disk = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
               if p.is_file() and p != root / MANIFEST}
    problems = []
    for rel, want in pkg.manifest.files.items():
        if rel not in on_disk:  # a "../x" or absolute key is never on disk: missing, so never trusted
            problems.append(FileProblem(rel, "missing", "missing"))
            continue
        got = file_sha256(on_disk[rel], cache=False)
        if got != want:
            problems.append(FileProblem(rel, "changed", f"sha256 {got[:12]}… but the manifest says {want[:12]}…"))
    problems += [FileProblem(rel, "unlisted", "not in the manifest") for rel in on_disk
                 if rel not in pkg.manifest.files]
    return problems


def rung_file(pkg: Package, quant: str | None = None) -> str:
    """The manifest's `file` of a rung (default: the recommended one), as written there."""
    want = (quant or pkg.manifest.recommended).upper()
    for rung in pkg.manifest.rungs:
        if rung.quant.upper() == want:
            return rung.file
    have = ", ".join(r.quant for r in pkg.manifest.rungs)
    raise UserError(f"{pkg.root}: no {want} rung in this package (it has {have})")


def _inside(pkg: Package, rel: str) -> Path:
    """The path of a file the manifest names, refused (fail closed) unless it is a plain relative path that stays
    in the package and is listed in `files`, so that a hash vouches for it."""
    where = f"{pkg.root / MANIFEST}: {rel!r}"
    if not rel or PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive:
        raise PackageFileRefused(f"{where} is an absolute path; expected a path relative to the package folder")
    if ".." in PurePosixPath(rel.replace("\\", "/")).parts:
        raise PackageFileRefused(f"{where} leads out of the package; expected a file inside the package folder")
    if rel not in pkg.manifest.files:
        raise PackageFileRefused(f"{where} is not listed in the manifest's `files`, so no hash vouches for it; "
                                 "expected a file the export wrote")
    path = pkg.root / rel
    if not path.resolve().is_relative_to(pkg.root.resolve()):
        raise PackageFileRefused(f"{where} is a link leading out of the package; expected a file inside it")
    return path


def verify_package_file(pkg: Package, rel: str, *, fresh: bool = True) -> Path:
    """The path of package file `rel` (as manifest.json names it, e.g. a rung's `file`), after checking that it
    stays inside the package, is listed in `files`, and hashes to what is listed there: re-hashed from its bytes
    when `fresh` (the default), else through the sha256 cache. Raises PackageFileRefused (a UserError)."""
    path = _inside(pkg, rel)
    if not path.is_file():
        raise PackageFileRefused(f"{pkg.root}: {rel} is missing from the package; run `honed verify {pkg.root}`")
    got, want = file_sha256(path, cache=not fresh), pkg.manifest.files[rel]
    if got != want:
        raise PackageFileRefused(f"{path}: sha256 {got[:12]}… but the package manifest says {want[:12]}…; the file "
                                 f"changed since export. Run `honed verify {pkg.root}`")
    return path


def package_gguf(pkg: Package, quant: str | None = None, *, fresh: bool = True) -> Path:
    """The GGUF of a rung (default: the recommended one), checked by `verify_package_file`: the one to load."""
    return verify_package_file(pkg, rung_file(pkg, quant), fresh=fresh)


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
    file_sha = file_sha256(test_file, cache=False)
    now = {items_hash(items), file_sha}
    for key in TEST_HASH_KEYS:
        want = pkg.manifest.hashes.get(key)
        if want and want not in now:
            result.problems.append(f"manifest.json hashes.{key} = {want[:12]}… but the package's test set hashes "
                                   f"to {items_hash(items)[:12]}… (items) / {file_sha[:12]}… (file)")
    return task


def _run_anchors(pkg: Package, task: Any, gguf: Path, backend: str, result: VerifyResult) -> None:
    from honed.backends import open_backend
    from honed.evaluate.scoring import judge
    from honed.task.data import Item
    from honed.task.prompt import build_request, sampling_for

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
    try:
        with open_backend(backend, str(gguf)) as be:
            for a in anchors:
                item = Item(a.id, a.inputs, a.expected)
                resp = be.generate([build_request(task, item, sampling, backend=be)])[0]
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
    result.files = file_problems(pkg)
    try:
        rel = rung_file(pkg, quant)
        gguf = _inside(pkg, rel)
    except UserError as exc:
        result.problems.append(str(exc))
        return result
    result.quant = (quant or pkg.manifest.recommended).upper()
    result.gguf = rel
    task = _check_task(pkg, result)
    if task is None:
        return result
    bad = [f for f in result.files if f.file == rel and f.issue in ("changed", "missing")]
    if bad:  # never load a tampered model: its answers would prove nothing, and it may crash llama.cpp
        result.problems.append(f"anchors not run: {rel} failed its hash check ({bad[0].issue})")
        return result
    _run_anchors(pkg, task, gguf, backend, result)
    return result


def result_json(result: VerifyResult) -> str:
    return json.dumps(result.as_dict(), ensure_ascii=False, indent=2, default=str)

"""`evaluate(task, backend, split)`: run every item through a backend, cached and resumable, and score it."""

from __future__ import annotations

import json
import platform
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed import __version__
from honed.backends.base import Backend
from honed.display import Bar
from honed.evaluate.document import RESULT_FILE, EvalDocument
from honed.evaluate.scoring import ItemRecord, item_keywords, judge, score, timing_summary
from honed.store import Store, canonical_json, request_key, sha256_text, write_json_atomic, write_text_atomic
from honed.task.data import Item, items_hash, load_items
from honed.task.prompt import build_request, decide_constrained, sampling_for
from honed.task.spec import Task
from honed.types import Request, Response


@dataclass
class EvalResult:
    """The typed document (`document`: what `result.json` and `--json` hold), the per-item records and where the
    run lives."""

    document: EvalDocument
    records: list[ItemRecord]
    run_id: str | None = None
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def doc(self) -> dict[str, Any]:
        """result.json's JSON object."""
        return self.document.as_json()


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def peak_memory(backend: Backend) -> dict[str, Any]:
    """Peak memory of an in-process model: this process's peak RSS, plus GPU memory where nvidia-smi sees it.

    Remote servers' memory cannot be seen from here: reported as unknown (None), never guessed.
    """
    if not backend.in_process:
        return {"peak_memory_mb": None, "memory_source": "unknown (remote server)"}
    import resource
    import shutil
    import subprocess

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    try:  # ru_maxrss carries the parent's peak across fork+exec (an eval spawned by a big process reads big);
        # VmHWM is this process image's own high-water mark
        status = Path("/proc/self/status").read_text(encoding="ascii")
        rss = int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    out: dict[str, Any] = {"peak_memory_mb": round(rss, 1), "memory_source": "process peak RSS"}
    if shutil.which("nvidia-smi"):
        import os

        try:
            q = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=10).stdout
            used = sum(float(m) for p, m in (line.split(",") for line in q.splitlines() if line.strip())
                       if int(p) == os.getpid())
            if used:
                out["gpu_memory_mb"] = used
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    return out


def _file_sha(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate(
    task: Task,
    backend: Backend,
    split: str = "test",
    *,
    repeats: int = 1,
    concurrency: int = 1,
    constrained: bool | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    think: bool | None = None,
    store: Store | None = None,
    progress: bool = False,
    limit: int | None = None,
    items: list[Item] | None = None,
    write_run: bool = True,
) -> EvalResult:
    """Evaluate `backend`'s model on a split of `task`. Finished responses come from the cache."""
    t_start = time.perf_counter()
    items = items if items is not None else load_items(task, split)
    if limit is not None:
        items = items[:limit]
    constrained = decide_constrained(task, constrained)
    own_store = store is None
    store = store or Store()
    model_id = backend.cache_identity()

    jobs: list[tuple[int, Item, Request, str, str, str]] = []
    for r in range(repeats):
        sampling = sampling_for(task, r, max_tokens, temperature, think)
        for item in items:
            req = build_request(task, item, sampling, constrained=constrained, backend=backend)
            key, phash, settings = request_key(model_id, req)
            jobs.append((r, item, req, key, phash, settings))

    responses: dict[int, tuple[Response, bool]] = {}
    missing: list[int] = []
    for j, job in enumerate(jobs):
        hit = store.get(job[3])
        if hit is not None:
            responses[j] = (hit, True)
        else:
            missing.append(j)

    run_id = run_dir = None
    if write_run:
        run_id, run_dir = store.new_run_dir("eval", f"{task.name}-{backend.info.name.split('/')[-1]}")
        store.record_run(run_id, "eval", task.name, backend.info.name, backend.info.sha256, run_dir, "running")

    bar = Bar(progress, f"eval {task.name} · {backend.info.name}", len(jobs), "items", eta=True)
    bar.advance(len(jobs) - len(missing))
    workers = max(1, min(concurrency, backend.max_concurrency))
    batch = max(1, backend.max_batch)
    if batch > 1:  # similar prompt lengths share a batch: less padding
        missing.sort(key=lambda j: sum(len(m.content) for m in jobs[j][2].messages))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: dict[Future[list[Response]], list[int]] = {}
            queue = [missing[i:i + batch] for i in range(0, len(missing), batch)]
            while queue or pending:
                while queue and len(pending) < workers:
                    chunk = queue.pop(0)
                    pending[pool.submit(backend.generate, [jobs[j][2] for j in chunk])] = chunk
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    chunk = pending.pop(fut)
                    for j, resp in zip(chunk, fut.result(), strict=True):
                        _, _, _, key, phash, settings = jobs[j]
                        store.put(key, model_id, phash, settings, resp)  # committed now: survives a kill
                        responses[j] = (resp, False)
                    bar.advance(len(chunk))
    except BaseException:
        if run_id is not None and run_dir is not None:
            store.record_run(run_id, "eval", task.name, backend.info.name, backend.info.sha256, run_dir,
                             "interrupted")
        raise
    finally:
        bar.close()

    records = [judge(task, item, r, *responses[j], constrained=req.constraint is not None)
               for j, (r, item, req, *_rest) in enumerate(jobs)]

    keywords = [item_keywords(task, i.inputs) for i in items]
    scored = score(task, records, keywords, n_repeats=repeats)
    data_path = None if split == "custom" else task.split_path(split)
    doc: dict[str, Any] = {
        "honed_version": __version__,
        "run_id": run_id,
        "task": task.name,
        "kind": task.kind,
        "split": split,
        "model": {"name": backend.info.name, "backend": backend.info.backend, "path": backend.info.path,
                  "sha256": backend.info.sha256, "prompt_format": backend.info.details.get("prompt_format"),
                  "details": backend.info.details},
        "data": {"path": str(data_path) if data_path else None, "file_sha256": _file_sha(data_path),
                 "items_sha256": items_hash(items)},
        "settings": {**sampling_for(task, 0, max_tokens, temperature, think).key(), "constrained": constrained,
                     "repeats": repeats, "concurrency": workers, "batch": batch, "prompt": task.prompt},
        "n_items": len(items),
        "n_responses": len(records),
        "primary_metric": task.primary_metric,
        **scored,
        **timing_summary(records),
        **peak_memory(backend),
        "cache": {"hits": sum(r.cached for r in records), "misses": sum(not r.cached for r in records)},
        "wall_s": round(time.perf_counter() - t_start, 3),
    }
    # the writer checks its own document: a key missing or misspelt fails here, not in a reader stages later
    result = EvalResult(document=EvalDocument.model_validate(doc), records=records, run_id=run_id, run_dir=run_dir)
    if run_dir is not None and run_id is not None:
        _write_run(task, result, run_dir)
        store.record_run(run_id, "eval", task.name, backend.info.name, backend.info.sha256, run_dir, "complete",
                         {"primary_metric": task.primary_metric,
                          "value": result.document.metrics.get(task.primary_metric), "n_items": len(items)})
    if own_store:
        store.close()
    return result


def _write_run(task: Task, result: EvalResult, run_dir: Path) -> None:
    from honed.evaluate.summary import markdown_summary

    with (run_dir / "items.jsonl.tmp").open("w", encoding="utf-8") as fh:
        for rec in result.records:
            fh.write(json.dumps(rec.__dict__, ensure_ascii=False, default=str) + "\n")
    (run_dir / "items.jsonl.tmp").replace(run_dir / "items.jsonl")
    doc = result.document.as_json()
    write_json_atomic(run_dir / RESULT_FILE, doc)
    spec_text = task.source.read_text(encoding="utf-8") if task.source else canonical_json(task.spec.model_dump())
    write_json_atomic(run_dir / "manifest.json", {
        "run_id": result.run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": {"name": task.name, "file": str(task.source), "sha256": sha256_text(spec_text)},
        "task_dir": str(task.root),
        "data": doc["data"],
        "model": doc["model"],
        "settings": doc["settings"],
        "versions": {"honed": __version__, "python": platform.python_version(),
                     "llama_cpp_python": _version("llama-cpp-python"), "transformers": _version("transformers"),
                     "platform": platform.platform()},
    })
    write_json_atomic(run_dir / "task.json", task.spec.model_dump(by_alias=True))
    write_text_atomic(run_dir / "summary.md", markdown_summary(doc))

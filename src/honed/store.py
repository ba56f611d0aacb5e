"""State: a SQLite database (WAL) for cached responses and the run index, plus plain run folders.

Layout under HONED_HOME (default `.honed` in the current directory):
    honed.db                  responses (the cache) and runs (the index)
    runs/<run_id>/            one folder per run: result.json, items.jsonl, manifest.json, summary.md
A response is written and committed the moment it arrives, so a killed run loses at most the requests that
were in flight; re-running it answers finished items from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from honed.errors import UserError
from honed.types import Request, Response

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    settings TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER, completion_tokens INTEGER,
    ttft_s REAL, latency_s REAL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    model_sha256 TEXT,
    path TEXT NOT NULL,
    status TEXT NOT NULL,
    summary TEXT,
    created REAL NOT NULL
);
"""


def honed_home() -> Path:
    return Path(os.environ.get("HONED_HOME", ".honed")).resolve()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_key(model_identity: str, request: Request) -> tuple[str, str, str]:
    """(cache key, prompt hash, settings json) for a request to a model."""
    prompt = canonical_json({
        "messages": [m.as_dict() for m in request.messages],
        "constraint": None if request.constraint is None else {
            "kind": request.constraint.kind, "schema": request.constraint.schema,
            "choices": list(request.constraint.choices)},
    })
    prompt_hash = sha256_text(prompt)
    settings = canonical_json(request.sampling.key())
    return sha256_text(f"{model_identity}|{prompt_hash}|{settings}"), prompt_hash, settings


class Store:
    """The SQLite store. Safe to use from several threads (one connection, one lock)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or honed_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.home / "honed.db", check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def get(self, key: str) -> Response | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens, ttft_s, latency_s "
                "FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Response(text=row[0], finish_reason=row[1], prompt_tokens=row[2], completion_tokens=row[3],
                        ttft_s=row[4], latency_s=row[5])

    def put(self, key: str, model: str, prompt_hash: str, settings: str, response: Response) -> None:
        """Cache a response. Errors are never cached: a re-run asks again."""
        if response.finish_reason == "error":
            return
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (key, model, prompt_hash, settings, response.text, response.finish_reason,
                 response.prompt_tokens, response.completion_tokens, response.ttft_s, response.latency_s,
                 time.time()))

    def count_responses(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM responses WHERE model = ?", (model,)).fetchone()[0]

    # -- runs -------------------------------------------------------------------------------------------
    def new_run_dir(self, kind: str, label: str) -> tuple[str, Path]:
        """A new, empty run folder `<stamp>-<kind>-<label>[-N]`, unique even among runs started the same second."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:60]
        base = f"{stamp}-{kind}-{safe}"
        runs = self.home / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            run_id = base if n == 1 else f"{base}-{n}"
            try:  # claim the name with an exclusive mkdir: a look-then-create races with runs started alongside
                (runs / run_id).mkdir()
            except FileExistsError:
                continue
            return run_id, runs / run_id
        raise UserError(f"{runs}: 10000 runs named {base}[-N] already; remove old run folders")

    def record_run(self, run_id: str, kind: str, task: str, model: str, model_sha256: str | None, path: Path,
                   status: str, summary: dict[str, Any] | None = None) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
                (run_id, kind, task, model, model_sha256, str(path), status,
                 None if summary is None else canonical_json(summary), time.time()))

    def find_run(self, ref: str) -> Path | None:
        """A run folder by id (or unique id prefix), or by path."""
        p = Path(ref)
        if p.is_dir():
            return p
        if p.is_file():
            return p.parent
        with self._lock:
            rows = self._db.execute("SELECT path FROM runs WHERE run_id = ? OR run_id LIKE ? ORDER BY created",
                                    (ref, ref + "%")).fetchall()
        if len(rows) == 1 or (rows and Path(rows[-1][0]).name == ref):
            return Path(rows[-1][0])
        return None

    def resolve_run(self, ref: str, what: str = "run") -> Path:
        """`find_run`, or a one-line error saying how to list the runs."""
        found = self.find_run(ref)
        if found is None:
            raise UserError(f"{what} {ref!r} not found (no such folder, and no unique run id; `honed runs` lists "
                            "them)")
        return found

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT run_id, kind, task, model, status, summary, created FROM runs "
                                    "ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [dict(zip(("run_id", "kind", "task", "model", "status", "summary", "created"), r)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def resolve_run_dir(ref: str, what: str = "run") -> Path:
    """A run folder by id, id prefix or path, looked up in the default store (for commands taking a run)."""
    store = Store()
    try:
        return store.resolve_run(ref, what)
    finally:
        store.close()

"""The server's side of the request log: whole-line appends, size rotation, and repair of a torn tail.

Each record is one `os.write` of one line on an O_APPEND descriptor (as `honed.data.logs.append_record`), so a
crash or a `kill -9` loses at most the requests still in flight, never half a line in the middle of the file.
Rotation renames files (`requests.jsonl` → `.1` → `.2` …) with `os.replace`, between two writes, under the
same lock as the writes: a line is never split across two files.

The log holds users' prompts: every file of it (live, rotated, `.torn`) is created 0600, and a log found
with wider permissions is narrowed at start. `inputs="hash"` keeps only each input's hash, `"none"` neither.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Literal

from honed.data.dedup import content_hash
from honed.data.logs import LogRecord

InputsKept = Literal["full", "hash", "none"]
PRIVATE = 0o600

log = logging.getLogger("honed")


def repair_tail(path: Path) -> int:
    """Cut an unterminated last line (a write a crash interrupted) so new lines do not glue onto it.

    The fragment is kept in `<log>.torn` as evidence. Returns the number of bytes cut.
    """
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        # Find the last newline, reading backwards in blocks.
        pos, keep = size, 0
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            fh.seek(pos)
            block = fh.read(step)
            idx = block.rfind(b"\n")
            if idx >= 0:
                keep = pos + idx + 1
                break
        fh.seek(keep)
        fragment = fh.read()
        _append(Path(str(path) + ".torn"), fragment + b"\n")
        fh.truncate(keep)
    log.warning("%s ended in a half-written line (%d bytes, from a crash); moved it to %s.torn",
                path, size - keep, path)
    return size - keep


def _append(path: Path, data: bytes) -> None:
    """One write on an O_APPEND descriptor of a file created owner-only."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def redact(record: LogRecord, inputs: InputsKept) -> LogRecord:
    """The record as the log keeps it: the input, only its hash, or neither (the hash of an empty input)."""
    if inputs == "full":
        return record
    input_hash = record.input_hash if inputs == "hash" else content_hash({})
    return record.model_copy(update={"input": {}, "input_hash": input_hash,
                                     "signals": {**record.signals, "log_inputs": inputs}})


class RequestLog:
    """Thread-safe writer of one JSONL request log with size-based rotation."""

    def __init__(self, path: Path, max_bytes: int, keep: int = 5, inputs: InputsKept = "full") -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.inputs = inputs
        self._lock = threading.Lock()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        torn = Path(str(self.path) + ".torn")
        for f in [*self.files(), *([torn] if torn.exists() else [])]:  # from an older honed: narrow to owner-only
            if f.stat().st_mode & 0o077:
                f.chmod(PRIVATE)
        self.repaired_bytes = repair_tail(self.path)
        self.written = 0

    def _rotate(self) -> None:
        for n in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{n}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def write(self, record: LogRecord) -> None:
        """Append one record (redacted as `inputs` says), rotating first when it would push the file past
        `max_bytes`."""
        line = (redact(record, self.inputs).model_dump_json() + "\n").encode("utf-8")
        size = len(line)
        with self._lock:
            try:
                current = self.path.stat().st_size
            except FileNotFoundError:
                current = 0
            if current and current + size > self.max_bytes:
                self._rotate()
            _append(self.path, line)
            self.written += 1

    def files(self) -> list[Path]:
        """The live log and its rotated predecessors, newest first."""
        out = [self.path] if self.path.exists() else []
        out += [p for n in range(1, self.keep + 1) if (p := self.path.with_name(f"{self.path.name}.{n}")).exists()]
        return out

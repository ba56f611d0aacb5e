"""The server's side of the request log: whole-line appends, size rotation, and repair of a torn tail.

Each record is one `os.write` of one line on an O_APPEND descriptor (`honed.data.logs.append_record`), so a
crash or a `kill -9` loses at most the requests still in flight, never half a line in the middle of the file.
Rotation renames files (`requests.jsonl` → `.1` → `.2` …) with `os.replace`, between two writes, under the
same lock as the writes: a line is never split across two files.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from honed.data.logs import LogRecord, append_record

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
        with open(str(path) + ".torn", "ab") as torn:
            torn.write(fragment + b"\n")
        fh.truncate(keep)
    log.warning("%s ended in a half-written line (%d bytes, from a crash); moved it to %s.torn",
                path, size - keep, path)
    return size - keep


class RequestLog:
    """Thread-safe writer of one JSONL request log with size-based rotation."""

    def __init__(self, path: Path, max_bytes: int, keep: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = repair_tail(self.path)
        self.written = 0

    def _rotate(self) -> None:
        for n in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{n}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def write(self, record: LogRecord) -> None:
        """Append one record, rotating first when it would push the file past `max_bytes`."""
        size = len(record.model_dump_json().encode("utf-8")) + 1
        with self._lock:
            try:
                current = self.path.stat().st_size
            except FileNotFoundError:
                current = 0
            if current and current + size > self.max_bytes:
                self._rotate()
            append_record(self.path, record)
            self.written += 1

    def files(self) -> list[Path]:
        """The live log and its rotated predecessors, newest first."""
        out = [self.path] if self.path.exists() else []
        out += [p for n in range(1, self.keep + 1) if (p := self.path.with_name(f"{self.path.name}.{n}")).exists()]
        return out

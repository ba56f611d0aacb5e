"""A tune run's status file, `RUN/status.json`: "running" from the moment the run folder exists, the final status
("complete", "interrupted", "collapsed") only when `finish` has written everything else.

A run killed with SIGKILL (or by the OOM killer, or a power cut) never reaches `finish`, so its status file keeps
saying "running": gate and export refuse it (`unfinished_reason`), and `honed tune --resume RUN` continues it from
its last checkpoint. The store's row follows the same two writes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from honed.errors import DataError
from honed.store import write_json_atomic
from honed.train.summary import SUMMARY_FILE

STATUS_FILE = "status.json"
FINISHED = ("complete", "interrupted", "collapsed")


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    write_json_atomic(Path(run_dir) / STATUS_FILE, {"status": status, "pid": os.getpid(),
                                                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra})


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The status document, or None for a run folder from before status files existed."""
    from honed.data.reader import read_json_file

    path = Path(run_dir) / STATUS_FILE
    if not path.is_file():
        return None
    doc = read_json_file(path, "expected the status document `honed tune` writes")
    if not isinstance(doc, dict) or not isinstance(doc.get("status"), str):
        raise DataError(f"{path}: not a run status document (expected {{\"status\": ...}})")
    return doc


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id exists on this machine (signal 0 checks without sending anything)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unfinished_reason(run_dir: Path) -> str | None:
    """Why a tune run cannot be used as a finished run (gated, exported), or None when it finished."""
    status = read_status(run_dir)
    if status is not None and status["status"] not in FINISHED:
        if pid_alive(status.get("pid")) and status.get("pid") != os.getpid():
            return f"is still running (pid {status['pid']}, status.json: {status['status']})"
        return (f"never finished (status.json still says {status['status']!r}: the process was killed or crashed "
                "before the end)")
    if not (Path(run_dir) / SUMMARY_FILE).is_file():
        return f"never finished (no {SUMMARY_FILE}: the process was killed or crashed before the end)"
    return None

"""The request log: one JSON object per line, appended by `serve`, read by `harvest` and `monitor`.

Append-only on purpose: a record is never edited, so the log is the evidence of what the model answered and
why it was trusted. Each record carries the confidence signals of the cascade that produced it (seed 000:
"downstream check confirmed", "all layers failed", a probe that found the page the model missed, a margin
between the top answers), which harvest's rules read.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from honed.data.dedup import content_hash
from honed.data.reader import read_lines
from honed.errors import DataError
from honed.jsonl import json_object

Signal = bool | int | float | str | None


class LogRecord(BaseModel):
    """One answered request."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    timestamp: datetime
    """When the answer was returned (ISO 8601, with time zone)."""
    request_id: str = Field(min_length=1)
    """Unique id of the request."""
    task: str = Field(min_length=1)
    """Name of the task (honed.toml `name`) the request was for."""
    input: dict[str, Any]
    """The item's input fields, as the prompt builder received them."""
    input_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    """`honed.data.dedup.content_hash(input)`: joins logs with data sets and the test lock."""
    output: str
    """The model's raw text."""
    answer: Any = None
    """The parsed answer (None when the output could not be parsed)."""
    layer: str = Field(min_length=1)
    """Which layer of the cascade answered (e.g. "tuned", "fallback", "rules")."""
    model: str = Field(min_length=1)
    """Model name or alias of that layer."""
    model_sha256: str | None = None
    """sha256 of the model file, where known."""
    latency_ms: float = Field(ge=0)
    """Time to answer, in milliseconds."""
    signals: dict[str, Signal] = {}
    """Confidence signals, e.g. {"margin": 0.8, "downstream_confirmed": true, "escalated": false}."""

    @classmethod
    def new(
        cls,
        *,
        task: str,
        inputs: dict[str, Any],
        output: str,
        answer: Any,
        layer: str,
        model: str,
        latency_ms: float,
        model_sha256: str | None = None,
        signals: dict[str, Signal] | None = None,
        request_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> LogRecord:
        """A record with its input hash computed and, unless given, a fresh id and the current time."""
        return cls(
            timestamp=timestamp or datetime.now(UTC),
            request_id=request_id or uuid.uuid4().hex,
            task=task,
            input=inputs,
            input_hash=content_hash(inputs),
            output=output,
            answer=answer,
            layer=layer,
            model=model,
            model_sha256=model_sha256,
            latency_ms=latency_ms,
            signals=signals or {},
        )


def append_record(path: Path, record: LogRecord) -> None:
    """Append one record as one line in a single write (O_APPEND), so concurrent writers never interleave."""
    line = (record.model_dump_json() + "\n").encode("utf-8")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(record)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"field {field!r}: {msg}")
    return "; ".join(parts)


def read_log(path: Path, skipped: list[str] | None = None) -> Iterator[tuple[int, LogRecord]]:
    """(line, record) for each line of a request log, read through the bounded reader (`honed.data.reader`).

    A malformed line — bad JSON, not UTF-8, longer than 1 MiB, a 5000-digit integer, nesting too deep, a wrong
    field — stops the read with its file, line and what is wrong. The one exception is an unparseable last line
    with no newline: a write cut short by a crash, which is skipped and noted in `skipped`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: request log not found")
    what = "each line of a request log is one JSON object"
    lines = read_lines(path)
    current = next(lines, None)
    while current is not None:
        following = next(lines, None)  # one line ahead: only the last line may be a write cut short
        lineno, raw = current
        current = following
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        if following is None and not raw.endswith("\n"):
            try:
                json.loads(raw)
            except json.JSONDecodeError:
                if skipped is not None:
                    skipped.append(f"{where}: incomplete last line (a write cut short), skipped")
                return
            except (ValueError, RecursionError):
                pass  # not a torn write: json_object below names what is wrong
        obj = json_object(raw, where, what)
        try:
            record = LogRecord.model_validate(obj)
        except ValidationError as exc:
            raise DataError(f"{where}: not a request-log record: {_describe(exc)}") from None
        yield lineno, record

"""The logged traffic of one task: its records, which were escalated, and their time windows."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from honed.data.logs import LogRecord, read_log
from honed.errors import UserError

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
AUTO_WINDOWS = 8
MIN_PER_WINDOW = 20


def parse_window(text: str) -> timedelta:
    """"30m", "6h", "1d", "1w" → timedelta."""
    m = _WINDOW.match(text)
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"window {text!r}: expected a positive number and a unit s, m, h, d or w (e.g. 1h, 1d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


@dataclass
class Traffic:
    records: list[LogRecord]
    """This task's records, oldest first."""
    escalated: list[bool]
    primary_layer: str
    """The layer that answers first (the shipped model); records it did not answer count as escalated."""
    escalation_source: str
    other_tasks: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def span(self) -> timedelta:
        return self.records[-1].timestamp - self.records[0].timestamp

    def windows(self, width: timedelta | None = None) -> list[tuple[datetime, datetime, list[int]]]:
        """(start, end, record indices) per window. Auto: up to 8 equal windows, ≥ 20 requests each on average."""
        t0, span = self.records[0].timestamp, self.span
        if width is None:
            count = max(1, min(AUTO_WINDOWS, len(self.records) // MIN_PER_WINDOW))
            width = span / count if span > timedelta(0) else timedelta(seconds=1)
        else:
            count = max(1, math.ceil(span / width)) if span > timedelta(0) else 1
        slots: list[list[int]] = [[] for _ in range(count)]
        for i, rec in enumerate(self.records):
            slots[min(int((rec.timestamp - t0) / width), count - 1)].append(i)
        return [(t0 + k * width, t0 + (k + 1) * width, s) for k, s in enumerate(slots)]


def is_escalated(rec: LogRecord, primary_layer: str) -> bool:
    """`signals.escalated` when the record carries it; otherwise answered by a layer other than the primary."""
    value = rec.signals.get("escalated")
    if isinstance(value, bool):
        return value
    return rec.layer != primary_layer


def log_files(log: Path) -> list[Path]:
    """The log and the files `honed serve` rotated out of it (`LOG.1`, `LOG.2`, …), oldest first."""
    log = Path(log)
    rotated = []
    n = 1
    while (p := log.with_name(f"{log.name}.{n}")).is_file():
        rotated.append(p)
        n += 1
    return [*reversed(rotated), log]


def load_traffic(log: Path, task: str, model_sha256: str | None = None, primary_layer: str | None = None
                 ) -> Traffic:
    """Read the log (with its rotated files), keep `task`'s records.

    The primary layer is the one given, else the layer whose records carry the shipped model's sha256, else
    the most frequent layer."""
    skipped: list[str] = []
    records, others = [], Counter()
    for path in log_files(log):
        for _, rec in read_log(path, skipped):
            if rec.task == task:
                records.append(rec)
            else:
                others[rec.task] += 1
    if not records:
        seen = ", ".join(f"{t} ({n})" for t, n in others.most_common(5)) or "none"
        raise UserError(f"{log}: no request for task {task!r} (the package's task); tasks in the log: {seen}")
    records.sort(key=lambda r: r.timestamp)
    layers = Counter(r.layer for r in records)
    if primary_layer is None:
        shipped = Counter(r.layer for r in records if model_sha256 and r.model_sha256 == model_sha256)
        primary_layer = (shipped or layers).most_common(1)[0][0]
        how = "the layer that served the package's model" if shipped else "the most frequent layer"
    else:
        how = "given"
    flags = [is_escalated(r, primary_layer) for r in records]
    n_signal = sum(isinstance(r.signals.get("escalated"), bool) for r in records)
    source = (f"signals.escalated on {n_signal} of {len(records)} records; elsewhere layer ≠ {primary_layer!r} "
              f"(primary layer: {how})")
    return Traffic(records, flags, primary_layer, source, dict(others), [str(p) for p in log_files(log)], skipped)


def token_means(records: list[LogRecord], prompts: list[str], gguf: Path | None) -> tuple[float, float, str]:
    """Mean (prompt, completion) tokens per request, and how they were counted.

    The log's own `signals.prompt_tokens` / `signals.completion_tokens` when every record has them; otherwise
    the prompt messages (`prompts`, one per record) and the logged outputs are tokenized with the package
    model's tokenizer (a cloud model's tokenizer counts differently, typically within ±20%).
    """
    sig = [(r.signals.get("prompt_tokens"), r.signals.get("completion_tokens")) for r in records]
    if all(isinstance(p, (int, float)) and isinstance(c, (int, float)) for p, c in sig):
        n = len(sig)
        return (sum(float(p) for p, _ in sig) / n, sum(float(c) for _, c in sig) / n,  # type: ignore[arg-type]
                "signals.prompt_tokens / signals.completion_tokens of the log")
    if gguf is None:
        raise UserError("the log has no token counts and no tokenizer is at hand")
    from honed.task.chat import gguf_vocab

    with gguf_vocab(gguf, why="counting the log's tokens") as llm:
        def count(text: str) -> int:
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

        p_tok = sum(count(p) for p in prompts) / len(prompts)
        c_tok = sum(count(r.output) for r in records) / len(records)
    return p_tok, c_tok, f"prompt messages and logged outputs tokenized with {gguf.name}'s tokenizer"

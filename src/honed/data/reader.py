"""Reading JSONL and CSV/TSV files, bounded: every bad input is one DataError naming the file and the line.

The one reader behind the task's items (`honed.task.data.load_items`) and imports (`honed.data.io`). It refuses,
instead of raising a traceback or reading without end:
- bytes that are not UTF-8 (a BOM at the start is fine);
- a line longer than `MAX_LINE_BYTES` — found after reading that many bytes, never the whole line;
- what `honed.jsonl` refuses in a JSON line: bad JSON, an integer over 4300 digits, nesting over 64 levels;
- a CSV cell larger than the csv module's field limit (128 KiB by default).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from honed.errors import DataError
from honed.jsonl import json_object

MAX_LINE_BYTES = 1 << 20
"""The longest line read, 1 MiB. A task item is a few KB; a longer line is a wrong file (a minified dump, a
binary) more often than data, and reading it whole would hold it all in memory first."""


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text with its line ending) for each line of a UTF-8 file, each at most MAX_LINE_BYTES."""
    try:
        fh = Path(path).open("rb")  # noqa: SIM115 (closed by the with below; only the open's error is ours)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    with fh:
        lineno = 0
        while raw := fh.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DataError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES} bytes "
                                f"({MAX_LINE_BYTES >> 20} MiB), the most honed reads; expected one record per line of a JSONL or CSV file")
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} "
                                "of the line); expected a UTF-8 text file: re-save it as UTF-8") from None
            yield lineno, text


def read_jsonl(path: Path, what: str = "each line must be one JSON object") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file; `what` ends every error message."""
    for lineno, text in read_lines(path):
        if text.strip():
            yield lineno, json_object(text, f"{path}:{lineno}", what)


def read_csv(path: Path, delimiter: str = ",") -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: cell}) for each non-blank row of a CSV/TSV file with a header row."""
    lines = (text for _, text in read_lines(path))
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: empty file (a CSV needs a header row naming the columns)")
        header = [h.strip() for h in header]
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}:{reader.line_num}: {len(row)} columns, but the header has {len(header)} "
                    f"({', '.join(header)}); quote cells that contain the delimiter"
                )
            yield reader.line_num, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            limit = csv.field_size_limit()
            raise DataError(f"{path}:{reader.line_num}: a cell longer than {limit} characters ({limit >> 10} KiB), "
                            "the most a CSV cell may hold; expected short cells (is a quote left open?)") from None
        raise DataError(f"{path}:{reader.line_num}: not a valid CSV row ({exc})") from None

"""Reading JSONL, CSV/TSV, JSON and TOML files, bounded: every bad input is one DataError naming the file and the
line.

The one reader behind the task's items (`honed.task.data.load_items`), imports (`honed.data.io`), request logs
(`honed.data.logs`), the test lock, harvest rules and a package's anchors. It refuses, instead of raising a
traceback or reading without end:
- bytes that are not UTF-8 (a BOM at the start is fine);
- a line longer than `MAX_LINE_BYTES` — found after reading that many bytes, never the whole line;
- what `honed.jsonl` refuses in a JSON line: bad JSON, an integer over 4300 digits, nesting over 64 levels;
- a CSV cell larger than the csv module's field limit (128 KiB by default);
- a whole JSON or TOML file over `MAX_DOCUMENT_BYTES`, and in TOML an integer too long to convert.
"""

from __future__ import annotations

import codecs
import csv
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from honed.errors import DataError
from honed.jsonl import json_document, json_object

MAX_LINE_BYTES = 1 << 20
"""The longest line read, 1 MiB. A task item is a few KB; a longer line is a wrong file (a minified dump, a
binary) more often than data, and reading it whole would hold it all in memory first."""
MAX_DOCUMENT_BYTES = 64 << 20
"""The largest whole JSON or TOML file read (a test lock of 100k items is ~20 MiB)."""


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


def read_text(path: Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """A whole UTF-8 text file, read through `read_lines` (so each line is bounded too), at most `max_bytes`."""
    parts: list[str] = []
    size = 0
    for lineno, text in read_lines(path):
        size += len(text)
        if size > max_bytes:
            raise DataError(f"{path}:{lineno}: file larger than {max_bytes >> 20} MiB, the most honed reads of one "
                            "JSON or TOML document")
        parts.append(text)
    return "".join(parts)


def read_json_file(path: Path, what: str) -> Any:
    """One JSON document (a lock file, a manifest), bounded; `what` ends every error message."""
    return json_document(read_text(path), str(path), what)


def read_toml_file(path: Path, what: str) -> dict[str, Any]:
    """One TOML document, bounded; `what` ends every error message."""
    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML: {exc}; {what}") from None
    except RecursionError:
        raise DataError(f"{path}: arrays or tables nested too deep for the TOML parser; {what}") from None
    except ValueError as exc:  # tomllib int()s a 5000-digit integer and lets Python's ValueError out
        limit = sys.get_int_max_str_digits()
        long = re.search(rf"\d{{{limit + 1},}}", text)
        where = f"{path}:{text.count(chr(10), 0, long.start()) + 1}" if long else str(path)
        raise DataError(f"{where}: an integer longer than {limit} digits, more than Python reads; {what}"
                        if long else f"{where}: not valid TOML ({exc}); {what}") from None

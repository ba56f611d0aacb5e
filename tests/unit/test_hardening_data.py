"""Hostile data files give one DataError naming file and line, and the CLI one line with exit 2: never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from honed.data.io import import_items
from honed.data.reader import MAX_LINE_BYTES, read_jsonl, read_lines
from honed.errors import DataError
from honed.jsonl import MAX_JSON_DEPTH, json_value
from honed.task import load_items, load_task
from tests.conftest import CLASSIFY_TOML, EXAMPLES, write_task

pytestmark = pytest.mark.unit

GOOD = '{"id": "a", "text": "I was charged twice", "expected": "billing"}\n'
WHAT = "each line must be one JSON object"


def _nested(depth: int) -> str:
    """A JSON object whose field "text" is nested `depth` levels deep counting the object itself."""
    return '{"id": "b", "expected": "billing", "text": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}\n"


# (file name, bytes, line, the message after "file:line: ")
HOSTILE = {
    "not-utf8": ("bad.jsonl", GOOD.encode() + b'{"id": "b", "text": "caf\xe9", "expected": "billing"}\n', 2,
                 "not UTF-8 (byte 0xe9 at byte 25 of the line); expected a UTF-8 text file: re-save it as UTF-8"),
    "huge-int": ("bad.jsonl", (GOOD + '{"id": "b", "text": "x", "expected": "billing", "n": ' + "7" * 5000 + "}\n")
                 .encode(), 2, (f"an integer longer than 4300 digits, more than Python reads (write it as a string); "
                               f"{WHAT}")),
    "deep": ("bad.jsonl", (GOOD + GOOD.replace('"a"', '"c"') + _nested(3000)).encode(), 3,
             f"JSON nested more than {MAX_JSON_DEPTH} levels deep; {WHAT}"),
    "long-line": ("bad.jsonl", (GOOD + '{"id": "b", "text": "' + "x" * MAX_LINE_BYTES + '", "expected": "billing"}\n')
                  .encode(), 2, (f"line longer than {MAX_LINE_BYTES} bytes (1 MiB), the most honed reads; expected one "
                                "record per line of a JSONL or CSV file")),
    "csv-cell": ("bad.csv", ("id,text,expected\na,hello,billing\nb," + "x" * 200_000 + ",billing\n").encode(), 3,
                 ("a cell longer than 131072 characters (128 KiB), the most a CSV cell may hold; expected short cells "
                 "(is a quote left open?)")),
}


@pytest.fixture
def task(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_task(write_task(tmp_path / "mini", CLASSIFY_TOML))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_is_one_data_error_naming_file_and_line(task, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    name, content, line, message = HOSTILE[case]
    src = tmp_path / name
    src.write_bytes(content)
    with pytest.raises(DataError) as err:
        import_items(task, src)
    assert str(err.value) == f"{src}:{line}: {message}"


@pytest.mark.parametrize("case", ["not-utf8", "huge-int", "deep", "long-line"])
def test_task_items_use_the_same_reader(tmp_path: Path, case: str) -> None:
    _, content, line, message = HOSTILE[case]
    folder = write_task(tmp_path / "mini", CLASSIFY_TOML)
    (folder / "test.jsonl").write_bytes(content)
    with pytest.raises(DataError) as err:
        load_items(load_task(folder), "test")
    assert str(err.value) == f"{folder / 'test.jsonl'}:{line}: {message}"


def test_limits_are_inclusive_and_a_bom_is_fine(tmp_path: Path) -> None:
    src = tmp_path / "edge.jsonl"
    longest = '{"t": "' + "x" * (MAX_LINE_BYTES - 9) + '"}'  # MAX_LINE_BYTES bytes, then its newline
    src.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + longest.encode() + b"\n" + longest.encode())
    lines = list(read_lines(src))
    assert [(n, len(text)) for n, text in lines] == [(1, len(GOOD)), (2, MAX_LINE_BYTES + 1), (3, MAX_LINE_BYTES)]
    assert [n for n, _ in read_jsonl(src)] == [1, 2, 3]
    deepest = json_value(_nested(MAX_JSON_DEPTH), "f:1", WHAT)
    assert deepest["id"] == "b"
    with pytest.raises(DataError, match=rf"^f:1: JSON nested more than {MAX_JSON_DEPTH} levels deep"):
        json_value(_nested(MAX_JSON_DEPTH + 1), "f:1", WHAT)  # parses in Python; refused all the same


def test_csv_structured_cell_is_checked_like_a_jsonl_line(tmp_path: Path) -> None:
    src = tmp_path / "links.csv"
    deep = "[" * 100 + "]" * 100
    src.write_text(f'company,target,candidates,expected\nAcme,jobs,"{deep}",1\nAcme,jobs,"[""a""]",'
                   + "9" * 5000 + "\n")
    with pytest.raises(DataError) as err:
        import_items(load_task(EXAMPLES / "pick"), src)
    assert str(err.value).splitlines()[1:] == [
        (f"  {src}:2: field 'candidates': JSON nested more than {MAX_JSON_DEPTH} levels deep; expected a JSON array "
        """like ["Careers", "Contact"]"""),
        f"  {src}:3: field 'expected' = '{'9' * 58}…: expected a candidate number 1..1 or 'NONE'",
    ]


def _honed(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HONED_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "honed", "data", *args], check=False, capture_output=True,
                          text=True, env=env, timeout=300)


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "mini", CLASSIFY_TOML)
    for case in sorted(HOSTILE):
        name, content, line, message = HOSTILE[case]
        src = tmp_path / case / name
        src.parent.mkdir()
        src.write_bytes(content)
        r = _honed("import", str(folder), str(src), home=tmp_path / "home")
        assert (r.returncode, r.stdout, r.stderr) == (2, "", f"error: {src}:{line}: {message}\n"), case


def test_cli_reading_task_items_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "mini", CLASSIFY_TOML)
    _, content, line, message = HOSTILE["huge-int"]
    (folder / "test.jsonl").write_bytes(content)
    for command in ("stats", "check"):
        r = _honed(command, str(folder), home=tmp_path / "home")
        assert (r.returncode, r.stderr) == (2, f"error: {folder / 'test.jsonl'}:{line}: {message}\n"), command

"""The last readers that crashed on hostile input — a package's anchors, the request log (harvest and monitor read
it), harvest rules and the test lock — now read through the bounded reader (`honed.data.reader`): a non-UTF-8 byte,
a 5000-digit integer or an over-long line is one DataError naming the file and the line, and the CLI prints it in
one line with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from honed.data.harvest import load_rules, parse_rule
from honed.data.lock import lock_path, read_lock, write_lock
from honed.data.logs import LogRecord, read_log
from honed.data.reader import MAX_LINE_BYTES
from honed.errors import DataError
from honed.exporting.package import load_package
from honed.task import load_items, load_task
from tests.conftest import CLASSIFY_ROWS, CLASSIFY_TOML, write_task
from tests.unit.test_verify import tiny_package

pytestmark = pytest.mark.unit

HUGE = "7" * 5000
LONG = f"line longer than {MAX_LINE_BYTES} bytes (1 MiB), the most honed reads; expected one record per line of a " \
       "JSONL or CSV file"


def huge_int(what: str) -> str:
    return f"an integer longer than 4300 digits, more than Python reads (write it as a string); {what}"


def not_utf8(at: int) -> str:
    return f"not UTF-8 (byte 0xe9 at byte {at} of the line); expected a UTF-8 text file: re-save it as UTF-8"


def hostile_lines(good: str) -> dict[str, tuple[bytes, str | None]]:
    """A JSON object line `good` spoiled three ways: (line bytes, the message after "file:line: ", or None for the
    over-long line whose message is LONG). Each keeps its newline."""
    assert good.startswith('{"') and good.endswith("}")
    return {
        "not-utf8": (b'{"x": "caf\xe9", ' + good[1:].encode() + b"\n", not_utf8(11)),
        "huge-int": (('{"x": ' + HUGE + ", " + good[1:] + "\n").encode(), None),
        "long-line": (('{"x": "' + "y" * MAX_LINE_BYTES + '", ' + good[1:] + "\n").encode(), LONG),
    }


# -- a package's anchors -------------------------------------------------------------------------------------------

ANCHOR_WHAT = 'expected one {"id", "inputs", "expected", "answer"} object per line'


@pytest.mark.parametrize("case", ["not-utf8", "huge-int", "long-line"])
def test_anchors_refuse_a_hostile_line(tmp_path: Path, case: str) -> None:
    root = tiny_package(tmp_path / "pkg")
    path = root / "anchors.jsonl"
    good = path.read_text().strip()
    line, message = hostile_lines(good)[case]
    path.write_bytes((good + "\n").encode() + line)
    with pytest.raises(DataError) as err:
        load_package(root).anchors()
    assert str(err.value) == f"{path}:2: {message or huge_int(ANCHOR_WHAT)}"


def test_anchors_name_a_wrong_shape_and_read_a_good_file(tmp_path: Path) -> None:
    root = tiny_package(tmp_path / "pkg")
    path = root / "anchors.jsonl"
    assert [(a.id, a.inputs, a.expected, a.answer) for a in load_package(root).anchors()] == [
        ("test-001", {"text": "hi"}, "NONE", "NONE")]  # control
    path.write_text('{"id": "a", "inputs": [1, 2], "expected": "NONE"}\n')
    with pytest.raises(DataError) as err:
        load_package(root).anchors()
    assert str(err.value).startswith(f"{path}:1: bad anchor line (") and str(err.value).endswith(ANCHOR_WHAT)


# -- the request log ----------------------------------------------------------------------------------------------

LOG_WHAT = "each line of a request log is one JSON object"


def _record_line(n: int) -> str:
    return LogRecord.new(task="mini", inputs={"text": f"message {n}"}, output="NONE", answer="NONE", layer="tuned",
                         model="m", latency_ms=12.0, request_id=f"r{n}").model_dump_json()


@pytest.mark.parametrize("case", ["not-utf8", "huge-int", "long-line"])
def test_request_log_refuses_a_hostile_line(tmp_path: Path, case: str) -> None:
    log = tmp_path / "requests.jsonl"
    line, message = hostile_lines(_record_line(2))[case]
    log.write_bytes((_record_line(1) + "\n").encode() + line + (_record_line(3) + "\n").encode())
    with pytest.raises(DataError) as err:
        list(read_log(log))
    assert str(err.value) == f"{log}:2: {message or huge_int(LOG_WHAT)}"


def test_a_hostile_last_line_is_not_taken_for_a_torn_write(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    good = _record_line(1) + "\n"
    log.write_text(good + _record_line(2)[:40])  # control: a write cut short is skipped and noted
    notes: list[str] = []
    assert [n for n, _ in read_log(log, notes)] == [1]
    assert notes == [f"{log}:2: incomplete last line (a write cut short), skipped"]
    log.write_bytes(good.encode() + hostile_lines(_record_line(2))["huge-int"][0].rstrip(b"\n"))
    with pytest.raises(DataError) as err:
        list(read_log(log, notes))
    assert str(err.value) == f"{log}:2: {huge_int(LOG_WHAT)}"


# -- harvest rules ------------------------------------------------------------------------------------------------

RULES_WHAT = "expected harvest rules: rule tables with when, use and label"
RULES_OK = '[[rule]]\nwhen = "margin < 0.5"\nuse = "edge"\n'


@pytest.mark.parametrize("case", ["not-utf8", "huge-int", "long-line"])
def test_rules_file_refuses_hostile_bytes(tmp_path: Path, case: str) -> None:
    path = tmp_path / "rules.toml"
    bad = {"not-utf8": (b'name = "caf\xe9"\n', not_utf8(12)),
           "huge-int": (f"[oversample]\nNONE = {HUGE}\n".encode(), huge_int(RULES_WHAT).replace(" (write it as a string)", "")),
           "long-line": (f'name = "{"y" * MAX_LINE_BYTES}"\n'.encode(), LONG)}[case]
    path.write_bytes(RULES_OK.encode() + bad[0])
    line = 5 if case == "huge-int" else 4
    with pytest.raises(DataError) as err:
        load_rules(path)
    assert str(err.value) == f"{path}:{line}: {bad[1]}"


def test_rules_refuse_a_huge_number_in_a_condition_or_label() -> None:
    with pytest.raises(DataError) as err:
        parse_rule(f"edge: margin < {HUGE}")
    assert str(err.value) == (f"--rule {'edge: margin < ' + HUGE!r}: invalid harvest rules: rule.0.when: clause margin "
                              "< …: the value is a number too long or nesting too deep to read; expected a short JSON "
                              "value")
    with pytest.raises(DataError) as err:
        parse_rule(f"train label={HUGE}: margin < 0.5")
    assert str(err.value) == (f"--rule {('train label=' + HUGE)[:60]!r}…: label is a number too long or nesting too "
                              "deep to read; expected a short JSON value")
    assert parse_rule("train label=NONE: margin < 0.5").label == "NONE"  # control


# -- the test lock -------------------------------------------------------------------------------------------------

def _locked(tmp_path: Path):  # type: ignore[no-untyped-def]
    task = load_task(write_task(tmp_path / "mini", CLASSIFY_TOML, {"test": CLASSIFY_ROWS}))
    path = write_lock(task, load_items(task, "test"))
    return task, path


def _lock_fix(task) -> str:  # type: ignore[no-untyped-def]
    return (f"restore it from version control, or delete it and re-lock with `honed data split {task.root} "
            "--relock`")


@pytest.mark.parametrize("case", ["not-utf8", "huge-int", "long-line"])
def test_lock_refuses_hostile_bytes(tmp_path: Path, case: str) -> None:
    task, path = _locked(tmp_path)
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    where = next(n for n, line in enumerate(lines, 1) if '"n_items"' in line)
    spoiled = {"not-utf8": lines[where - 1].replace('"n_items"', '"n_it\x00ms"').encode().replace(b"\x00", b"\xe9"),
               "huge-int": lines[where - 1].split(":")[0].encode() + f": {HUGE},\n".encode(),
               "long-line": lines[where - 1].replace('"n_items"', '"' + "y" * MAX_LINE_BYTES + '"').encode()}[case]
    assert read_lock(task) is not None  # control
    path.write_bytes("".join(lines[: where - 1]).encode() + spoiled + "".join(lines[where:]).encode())
    at = len(lines[where - 1].split('"')[0]) + 6  # the byte after `"n_it`
    message = {"not-utf8": not_utf8(at), "huge-int": huge_int(_lock_fix(task)), "long-line": LONG}[case]
    with pytest.raises(DataError) as err:
        read_lock(task)
    assert str(err.value) == f"{path}:{where}: {message}"
    assert lock_path(task) == path


def test_lock_of_the_wrong_shape_is_one_error(tmp_path: Path) -> None:
    task, path = _locked(tmp_path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError) as err:
        read_lock(task)
    assert str(err.value) == (f"{path}: not a valid honed lock manifest (expected a JSON object, got list); "
                              f"{_lock_fix(task)}")


# -- the CLI: one line, exit 2 -------------------------------------------------------------------------------------

def _honed(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HONED_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "honed", *args], check=False, capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_harvest_and_a_locked_task_print_one_line_and_exit_2(tmp_path: Path) -> None:
    task, lock = _locked(tmp_path)
    log = tmp_path / "requests.jsonl"
    log.write_bytes((_record_line(1) + "\n").encode() + hostile_lines(_record_line(2))["not-utf8"][0])
    r = _honed("data", "harvest", str(task.root), str(log), "--rule", "edge: margin < 0.5", home=tmp_path / "home")
    assert (r.returncode, r.stderr) == (2, f"error: {log}:2: {not_utf8(11)}\n")
    rules = tmp_path / "rules.toml"
    rules.write_bytes(RULES_OK.encode() + f"[oversample]\nNONE = {HUGE}\n".encode())
    r = _honed("data", "harvest", str(task.root), str(tmp_path / "requests.jsonl"), "--rules", str(rules),
               home=tmp_path / "home")
    assert (r.returncode, r.stderr) == (
        2, f"error: {rules}:5: {huge_int(RULES_WHAT).replace(' (write it as a string)', '')}\n")
    doc = json.loads(lock.read_text())
    lock.write_text(json.dumps(doc, indent=2).replace(f'"n_items": {doc["n_items"]}', f'"n_items": {HUGE}'))
    r = _honed("data", "stats", str(task.root), home=tmp_path / "home")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"error: {lock}:") and r.stderr.endswith(f": {huge_int(_lock_fix(task))}\n")

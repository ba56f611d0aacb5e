"""`honed data …` as a user runs it: a subprocess, real files; errors are one line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_task

pytestmark = pytest.mark.unit

TOML = """
name = "tickets"
kind = "classify"
[data]
train = "data/train.jsonl"
val = "data/val.jsonl"
test = "data/test.jsonl"
[prompt]
template = "Message: {{ text }}\\nAnswer with one of: {{ labels | join(', ') }}, or {{ none_label }}."
[classify]
labels = ["billing", "shipping"]
none_label = "NONE"
"""

SUBJECTS = [
    "invoice",
    "parcel",
    "refund",
    "courier",
    "receipt",
    "tracking",
    "charge",
    "box",
    "payment",
    "van",
]
PLACES = ["Lyon", "Oslo", "Quito", "Perth", "Cairo", "Dakar", "Hanoi", "Lima", "Riga", "Turin"]
VERBS = [
    "is missing",
    "looks wrong",
    "never came",
    "was doubled",
    "got lost",
    "is late",
    "is broken",
    "was refused",
    "arrived torn",
    "shows an error",
]


def honed(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HONED_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "honed", "data", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _csv(path: Path) -> None:
    rows = ["ref,body,category"]
    n = 0
    for i, s in enumerate(SUBJECTS):
        for j, p in enumerate(PLACES):
            label = ["billing", "shipping", "NONE"][(i + j) % 3]
            rows.append(f"R{n},My {s} from {p} {VERBS[(i * 3 + j) % 10]} (case {n}),{label}")
            n += 1
    path.write_text("\n".join(rows) + "\n")


def test_import_split_stats_check_and_a_violated_lock(tmp_path: Path, honed_home: Path) -> None:
    folder = write_task(tmp_path / "tickets", TOML)
    _csv(tmp_path / "raw.csv")
    r = honed(
        "import",
        str(folder),
        str(tmp_path / "raw.csv"),
        "--map",
        "id=ref",
        "--map",
        "text=body",
        "--map",
        "expected=category",
        home=honed_home,
    )
    assert r.returncode == 0, r.stderr
    assert "imported 100 items" in r.stdout
    r = honed(
        "split",
        str(folder),
        "--input",
        str(folder / "data" / "imported.jsonl"),
        "--seed",
        "1",
        home=honed_home,
    )
    assert r.returncode == 0, r.stderr
    assert "test set locked" in r.stdout and (folder / "data" / "test.lock.json").exists()
    r = honed("check", str(folder), "--json", str(tmp_path / "check.json"), home=honed_home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((tmp_path / "check.json").read_text())["ok"] is True

    test_file = folder / "data" / "test.jsonl"
    first = json.loads(test_file.read_text().splitlines()[0])
    with (folder / "data" / "train.jsonl").open("a") as fh:
        fh.write(json.dumps({**first, "id": "leak", "text": first["text"].upper()}) + "\n")
    r = honed("check", str(folder), home=honed_home)
    assert r.returncode == 1 and "1 of 10 items contaminated" in r.stdout

    test_file.write_text(test_file.read_text().replace(first["text"], first["text"] + " (edited)"))
    r = honed("split", str(folder), home=honed_home)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "locked test set changed" in r.stderr and first["id"] in r.stderr and "--relock" in r.stderr
    r = honed("stats", str(folder), home=honed_home)
    assert r.returncode == 0 and "LOCK VIOLATED" in r.stdout and "few_examples" in r.stdout
    r = honed("split", str(folder), "--relock", home=honed_home)
    assert r.returncode == 0 and "re-locked" in r.stdout and "left out leak" in r.stdout.replace("\n", " ")


def test_malformed_inputs_give_one_clear_error(tmp_path: Path, honed_home: Path) -> None:
    folder = write_task(tmp_path / "tickets", TOML)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "expected": "billing"}\n{"text": "x", "expected": "refunds"}\n{oops\n')
    r = honed("import", str(folder), str(bad), home=honed_home)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}:3: not valid JSON" in r.stderr.replace("\n", "")
    bad.write_text('{"text": "ok", "expected": "billing"}\n{"text": "x", "expected": "refunds"}\n')
    r = honed("import", str(folder), str(bad), home=honed_home)
    assert r.returncode == 2 and "bad.jsonl:2: field 'expected' = 'refunds'" in r.stderr.replace("\n", "")
    r = honed("split", str(folder), "--ratios", "80/20", home=honed_home)
    assert r.returncode == 2 and "--ratios" in r.stderr
    log = tmp_path / "log.jsonl"
    log.write_text('{"request_id": "x"}\n')
    r = honed("harvest", str(folder), str(log), "--rule", "train: confirmed == true", home=honed_home)
    assert r.returncode == 2 and "log.jsonl:1: not a request-log record" in r.stderr.replace("\n", "")
    r = honed("generate", str(folder), "--n", "2", "--k", "2", "--m", "3", home=honed_home)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "min_agree (m = 3) cannot exceed k = 2" in r.stderr.replace("\n", " ")


def test_replay_command(tmp_path: Path, honed_home: Path) -> None:
    r = honed("replay", "--items", "600", "--out", str(tmp_path / "replay.jsonl"), home=honed_home)
    assert r.returncode == 0 and "19 replay examples for 600 task examples" in r.stdout
    assert len((tmp_path / "replay.jsonl").read_text().splitlines()) == 19

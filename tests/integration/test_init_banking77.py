"""`honed init` as a new user runs it on a real CSV (Banking77's, 10,003 rows, 77 intents): the task it writes
is one `honed eval` runs without edits, and the commands it prints are the ones that work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, honed_cli

pytestmark = pytest.mark.integration
BANKING = REPO.parent / "shared" / "data" / "banking77"


def test_init_on_banking77_then_eval_without_edits(tmp_path: Path, honed_home: Path, tiny_model: Any) -> None:
    if not (BANKING / "train.csv").is_file():
        pytest.skip(f"public data sets not available: {BANKING / 'train.csv'} is missing")
    folder = tmp_path / "banking"
    init = honed_cli("init", str(folder), "--kind", "classify", "--from", str(BANKING / "train.csv"), "--input",
                     "text", "--label", "category")
    assert init.returncode == 0, init.stderr
    assert "77 labels" in init.stdout and "test set locked" in init.stdout
    first = init.stdout.split("next:")[1].strip().splitlines()[0].split("#")[0].split()
    assert first[:3] == ["honed", "eval", str(folder)] and first[3:] == ["--limit", "100"]
    # the printed command as is, on the tiny model (the default SmolLM2 would take minutes on 100 items of a
    # 77-label prompt), cut to 5 items
    ev = honed_cli(*first[1:3], "--limit", "5", "--model", str(tiny_model.gguf))
    assert ev.returncode == 0, ev.stderr
    (run,) = (honed_home / "runs").glob("*-eval-banking-*")
    result = json.loads((run / "result.json").read_text())
    assert result["n_items"] == 5 and result["settings"]["constrained"] is True
    labels = set(json.loads((BANKING / "categories.json").read_text()))
    answers = [json.loads(line)["answer"] for line in (run / "items.jsonl").read_text().splitlines()]
    assert set(answers) <= labels  # constrained decoding: every answer is one of the 77 intents

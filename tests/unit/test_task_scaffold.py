"""`honed init`: honed.toml from the data's labels, the data imported and split with the test locked, and the
mistakes a new user makes (wrong column names, a none label the data lacks, an existing task) as one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from honed.data.lock import read_lock
from honed.errors import DataError, UserError
from honed.task import load_items, load_task
from honed.task.scaffold import init_task
from tests.conftest import honed_cli

pytestmark = pytest.mark.unit

INTENTS = {"refund": ["I want my money back", "refund my order please", "give me a refund now",
                      "money back for the broken kettle", "I need a refund for the pan"],
           "delivery": ["where is my parcel", "my delivery is late", "tracking shows nothing",
                        "the courier never came", "when will my box arrive"],
           "out_of_scope": ["what is the weather", "tell me a joke", "who won the match", "sing a song",
                            "what time is it"]}


def _csv(path: Path, column: str = "message", label: str = "intent") -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([column, label, "agent"])
        for intent, texts in INTENTS.items():
            for i, text in enumerate(texts):
                w.writerow([f"{text} ({i})", intent, "ann"])
    return path


def test_init_writes_a_task_and_splits_its_data(tmp_path: Path) -> None:
    src = _csv(tmp_path / "tickets.csv")
    r = init_task(tmp_path / "triage", src, input_field="message", label_field="intent", none_label="out_of_scope",
                  ratios=(0.6, 0.2, 0.2))
    task = load_task(tmp_path / "triage")
    assert task.name == "triage" and task.kind == "classify"
    assert task.spec.classify.labels == r.labels == ["delivery", "refund"]
    assert task.spec.classify.none_label == "out_of_scope"
    assert task.spec.generation.constrained is True
    items = {s: load_items(task, s) for s in ("train", "val", "test")}  # verifies the test lock too
    assert sum(map(len, items.values())) == 15 and r.counts == {s: len(v) for s, v in items.items()}
    assert {i.expected for i in items["test"]} == {"delivery", "refund", "out_of_scope"}  # stratified
    assert read_lock(task) is not None and r.lock_file.is_file()
    first = items["train"][0]
    assert set(first.inputs) == {"message"}  # the prompt names the column; unused columns are left out
    from honed.task.prompt import build_messages

    prompt = build_messages(task, first.inputs)[-1].content
    assert first.inputs["message"] in prompt and "- refund" in prompt and "answer out_of_scope" in prompt


def test_a_column_name_that_is_no_template_name_becomes_text(tmp_path: Path) -> None:
    src = _csv(tmp_path / "t.csv", column="user message")
    init_task(tmp_path / "t", src, input_field="user message", label_field="intent")
    task = load_task(tmp_path / "t")
    assert task.spec.classify.labels == ["delivery", "out_of_scope", "refund"] and task.spec.classify.none_label is None
    assert set(load_items(task, "train")[0].inputs) == {"text"}


def test_the_mistakes_of_a_new_user(tmp_path: Path) -> None:
    src = _csv(tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"t\.csv: no column 'intnt'; its columns are agent, intent, message: name "
                                        r"the text column with --input and the label column with --label \(here "
                                        r"--label\)"):
        init_task(tmp_path / "a", src, input_field="message", label_field="intnt")
    with pytest.raises(DataError, match=r"--none-label 'NONE' does not occur in the label column 'intent'"):
        init_task(tmp_path / "b", src, input_field="message", label_field="intent", none_label="NONE")
    with pytest.raises(UserError, match="scaffolds classify tasks for now"):
        init_task(tmp_path / "c", src, kind="extract")
    rows = src.read_text().splitlines()
    (tmp_path / "gap.csv").write_text("\n".join([rows[0], rows[1], "hello,,ann", *rows[2:]]) + "\n")
    with pytest.raises(DataError, match=r"gap\.csv:3: the label column 'intent' is empty"):
        init_task(tmp_path / "d", tmp_path / "gap.csv", input_field="message", label_field="intent")
    init_task(tmp_path / "e", src, input_field="message", label_field="intent")
    with pytest.raises(UserError, match=r"honed\.toml exists already"):
        init_task(tmp_path / "e", src, input_field="message", label_field="intent")
    assert not (tmp_path / "a" / "honed.toml").exists()  # a refused init leaves nothing behind


def test_init_cli_prints_the_next_three_commands(tmp_path: Path) -> None:
    src = _csv(tmp_path / "t.csv")
    proc = honed_cli("init", str(tmp_path / "new"), "--kind", "classify", "--from", str(src), "--input", "message",
                     "--label", "intent", "--none-label", "out_of_scope", "--ratios", "0.6,0.2,0.2")
    assert proc.returncode == 0, proc.stderr
    nxt = proc.stdout.split("next:")[1].strip().splitlines()
    assert [line.split()[:2] for line in nxt] == [["honed", "eval"], ["honed", "tune"], ["honed", "gate"]]
    assert f"honed eval {tmp_path / 'new'} --limit 3" in nxt[0]
    bad = honed_cli("init", str(tmp_path / "x"), "--from", str(src))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no column 'text'" in bad.stderr


"""Chat data: items whose input is a conversation (a list of messages) import from JSONL, CSV and Parquet to the same
items, render through the one prompt builder as a transcript inside the task's message, and a malformed turn is
a file:row error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from honed.data.dedup import item_text
from honed.data.io import import_items
from honed.errors import DataError
from honed.task import build_messages, load_items, load_task
from tests.conftest import write_task

pytestmark = pytest.mark.unit

TOML = """
name = "handoff"
kind = "classify"
[data]
test = "test.jsonl"
[prompt]
template = '''Conversation:
{{ conversation | transcript }}

Does the customer need a human agent? Answer human or bot.'''
[classify]
labels = ["human", "bot"]
"""

ROWS = [
    {"id": "a", "conversation": [{"role": "user", "content": "my card was stolen"},
                                 {"role": "assistant", "content": "I can block it. Shall I?"},
                                 {"role": "user", "content": "no, I want to talk to a person"}],
     "expected": "human"},
    {"id": "b", "conversation": [{"role": "user", "content": "what are your opening hours?"}], "expected": "bot"},
]


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    return write_task(tmp_path / "handoff", TOML, {"test": ROWS})


def test_a_conversation_renders_as_a_transcript_in_the_tasks_message(task_dir: Path) -> None:
    task = load_task(task_dir)
    items = load_items(task, "test")
    (user,) = [m for m in build_messages(task, items[0].inputs) if m.role == "user"]
    assert user.content == ("Conversation:\nuser: my card was stolen\nassistant: I can block it. Shall I?\n"
                            "user: no, I want to talk to a person\n\nDoes the customer need a human agent? Answer "
                            "human or bot.")
    assert item_text(items[0].inputs) == "user: my card was stolen\nassistant: I can block it. Shall I?\n" \
                                         "user: no, I want to talk to a person"


def test_jsonl_csv_and_parquet_import_to_the_same_conversations(task_dir: Path, tmp_path: Path) -> None:
    task = load_task(task_dir)
    from_jsonl = import_items(task, task_dir / "test.jsonl")
    src = tmp_path / "chats.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "conversation", "expected"])
        for r in ROWS:
            w.writerow([r["id"], json.dumps(r["conversation"]), r["expected"]])
    from_csv = import_items(task, src)
    assert [(i.id, i.inputs, i.expected) for i in from_csv] == [(i.id, i.inputs, i.expected) for i in from_jsonl]
    assert from_jsonl[0].inputs["conversation"] == ROWS[0]["conversation"]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "chats.parquet")
    from_parquet = import_items(task, tmp_path / "chats.parquet")
    assert [(i.id, i.inputs) for i in from_parquet] == [(i.id, i.inputs) for i in from_jsonl]


def test_a_malformed_turn_is_a_file_row_error(task_dir: Path, tmp_path: Path) -> None:
    task = load_task(task_dir)
    bad = [dict(ROWS[0]), {**ROWS[1], "conversation": [{"role": "customer", "content": "hi"}]},
           {"id": "c", "conversation": [{"role": "user", "content": ["not", "text"]}], "expected": "bot"}]
    src = tmp_path / "bad.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(DataError) as err:
        import_items(task, src)
    msg = str(err.value)
    assert "2 row(s) cannot be imported" in msg
    assert f"{src}:2: field 'conversation', message 1: role 'customer'; expected one of system, user" in msg
    assert f"{src}:3: field 'conversation', message 1: content must be text, got list" in msg

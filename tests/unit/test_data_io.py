"""Import with a field mapping from JSONL and CSV; malformed rows are reported with file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.data.io import import_items, input_fields, item_row, parse_mapping, write_items
from honed.errors import DataError
from honed.task import load_items, load_task
from tests.conftest import CLASSIFY_TOML, EXAMPLES, write_task

pytestmark = pytest.mark.unit


@pytest.fixture
def task(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_task(write_task(tmp_path / "mini", CLASSIFY_TOML))


def test_input_fields_come_from_the_templates() -> None:
    assert input_fields(load_task(EXAMPLES / "classify")) == ["text"]
    assert input_fields(load_task(EXAMPLES / "pick")) == ["candidates", "company", "target"]
    assert input_fields(load_task(EXAMPLES / "extract")) == ["sentence"]


def test_csv_import_with_mapping_and_label_renames(task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "tickets.csv"
    src.write_text(
        'ticket,body,category,agent\nT1,"I was charged twice, please refund",billing_issue,ann\n'
        "T2,Where is my parcel?,shipping,bob\n,What is the weather?,NONE,cy\n"
    )
    items = import_items(
        task,
        src,
        mapping=parse_mapping(["id=ticket", "text=body", "expected=category"]),
        label_map={"billing_issue": "billing"},
    )
    assert [(i.id, i.inputs, i.expected) for i in items] == [
        ("T1", {"text": "I was charged twice, please refund"}, "billing"),
        ("T2", {"text": "Where is my parcel?"}, "shipping"),
        ("tickets-00004", {"text": "What is the weather?"}, "NONE"),
    ]  # no id: file stem + line; agent dropped
    out = tmp_path / "out" / "items.jsonl"
    write_items(task, out, items)
    assert load_items(task, "custom", path=out) == [
        type(i)(id=i.id, inputs=i.inputs, expected=i.expected, line=n) for n, i in enumerate(items, 1)
    ]
    assert item_row(task, items[0]) == {
        "id": "T1",
        "text": "I was charged twice, please refund",
        "expected": "billing",
    }


def test_every_bad_row_is_reported_at_once(task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "bad.jsonl"
    src.write_text(
        json.dumps({"id": "a", "message": "fine", "label": "billing"})
        + "\n"
        + json.dumps({"id": "b", "label": "billing"})
        + "\n"
        + json.dumps({"id": "c", "message": "hi", "label": "refunds"})
        + "\n"
        + json.dumps({"id": "a", "message": "again", "label": "NONE"})
        + "\n"
        + json.dumps({"id": "d", "message": "  ", "label": "NONE"})
        + "\n"
    )
    with pytest.raises(DataError) as err:
        import_items(task, src, mapping={"text": "message", "expected": "label"})
    msg = str(err.value)
    assert "4 row(s) cannot be imported" in msg
    assert f"{src}:2: missing field 'text' (mapped from source field 'message')" in msg
    assert f"{src}:3: field 'expected' = 'refunds' is not one of the task's labels" in msg
    assert f"{src}:4: duplicate id 'a' (first on line 1)" in msg
    assert f"{src}:5: field 'text' is empty" in msg


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [
        ('{"id": 1, "text": "x"\n', ".jsonl", r":1: not valid JSON"),
        ('["a list"]\n', ".jsonl", r":1: expected a JSON object, got list"),
        ("id,text,expected\n1,hello\n", ".csv", r":2: 2 columns, but the header has 3"),
        ("", ".csv", "empty file"),
        ("x", ".xlsx", "cannot tell the format"),
    ],
)
def test_malformed_files(task, tmp_path: Path, content: str, suffix: str, match: str) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / f"f{suffix}"
    src.write_text(content)
    with pytest.raises(DataError, match=match):
        import_items(task, src)


def test_mapping_errors(task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match="expected TASK_FIELD=SOURCE_FIELD"):
        parse_mapping(["text"])
    src = tmp_path / "a.jsonl"
    src.write_text('{"text": "x", "expected": "NONE"}\n')
    with pytest.raises(DataError, match="fields the task does not have: \\['txet'\\]"):
        import_items(task, src, mapping={"txet": "body"})
    with pytest.raises(DataError, match="file not found"):
        import_items(task, tmp_path / "missing.csv")


def test_structured_fields_from_csv(tmp_path: Path) -> None:
    pick = load_task(EXAMPLES / "pick")
    src = tmp_path / "links.csv"
    src.write_text(
        'company,target,candidates,expected\nAcme,careers page,"[""Jobs"", ""Blog""]",1\n'
        "Acme,contact page,Jobs|Blog,NONE\n"
    )
    with pytest.raises(DataError, match=r"links.csv:3: field 'candidates' must be a JSON array"):
        import_items(pick, src)
    src.write_text('company,target,candidates,expected\nAcme,careers page,"[""Jobs"", ""Blog""]",1\n')
    (item,) = import_items(pick, src)
    assert item.inputs["candidates"] == ["Jobs", "Blog"] and item.expected == 1
    extract = load_task(EXAMPLES / "extract")
    src = tmp_path / "s.csv"
    src.write_text(
        'sentence,expected\nRedis runs on k3s.,"{""entities"": [], ""relationships"": []}"\n'
        "Bad one,{not json}\n"
    )
    with pytest.raises(DataError, match=r"s.csv:3: field 'expected': not valid JSON \(Expecting property name "
                                        r"enclosed in double quotes at column 2\); expected a JSON object like"):
        import_items(extract, src)

"""Parquet files and `datasets` folders import to the same items as the JSONL they were made from, with the same
field mapping and file:row errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.data.io import import_items
from honed.errors import DataError
from honed.task import load_task
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.unit
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _renamed(rows: list[dict]) -> list[dict]:
    """The rows as a user's export names them: `message` and `label` instead of the task's fields."""
    return [{"ticket": r["id"], "message": r["text"], "label": r["expected"]} for r in rows]


MAPPING = {"id": "ticket", "text": "message", "expected": "label"}


@pytest.fixture
def classify() -> tuple:
    task = load_task(EXAMPLES / "classify")
    return task, EXAMPLES / "classify" / "data" / "test.jsonl"


def _same(a: list, b: list) -> list:
    """Items without their row numbers (JSONL counts lines, tables count rows: here the same, as no line is
    blank)."""
    assert [i.line for i in a] == [i.line for i in b]
    return [(i.id, i.inputs, i.expected) for i in a]


def test_parquet_imports_to_the_jsonl_items(classify: tuple, tmp_path: Path) -> None:
    task, src = classify
    rows = _renamed(_rows(src))
    jsonl = tmp_path / "renamed.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "renamed.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=7)  # several row groups
    from_jsonl = import_items(task, jsonl, mapping=dict(MAPPING))
    from_parquet = import_items(task, parquet, mapping=dict(MAPPING))
    assert len(from_jsonl) == len(rows) > 7
    assert _same(from_parquet, from_jsonl) == _same(from_jsonl, from_parquet)


def test_lists_keep_their_type_in_parquet(tmp_path: Path) -> None:
    task = load_task(EXAMPLES / "pick")
    rows = [r for r in _rows(EXAMPLES / "pick" / "data" / "test.jsonl") if isinstance(r["expected"], int)]
    jsonl = tmp_path / "pick.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "pick.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    items = import_items(task, parquet)
    assert items[0].inputs["candidates"] == rows[0]["candidates"] and isinstance(items[0].expected, int)
    assert [(i.id, i.inputs, i.expected) for i in items] == \
        [(i.id, i.inputs, i.expected) for i in import_items(task, jsonl)]


def test_parquet_errors_name_the_file_and_row(classify: tuple, tmp_path: Path) -> None:
    task, src = classify
    rows = _renamed(_rows(src))[:5]
    rows[1]["label"] = "not_a_label"
    rows[3]["message"] = "  "
    parquet = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    with pytest.raises(DataError) as err:
        import_items(task, parquet, mapping=dict(MAPPING))
    msg = str(err.value)
    assert "2 row(s) cannot be imported" in msg
    assert f"{parquet}:2: " in msg and "not_a_label" in msg
    assert f"{parquet}:4: field 'text' is empty" in msg
    with pytest.raises(DataError, match=r"bad\.parquet:1: missing field 'text'; the row has \['label', 'message', "
                                        r"'ticket'\]; map it with --map text=SOURCE_FIELD"):
        import_items(task, parquet, mapping={"id": "ticket", "expected": "label"})
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="junk.parquet: not a readable Parquet file"):
        import_items(task, tmp_path / "junk.parquet")


def test_datasets_folder_imports_to_the_jsonl_items(classify: tuple, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    task, src = classify
    rows = _renamed(_rows(src))
    jsonl = tmp_path / "renamed.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "ds"), max_shard_size="2KB")  # several shards, read in order
    assert len(list((tmp_path / "ds").glob("*.arrow"))) > 1
    from_jsonl = import_items(task, jsonl, mapping=dict(MAPPING))
    assert _same(import_items(task, tmp_path / "ds", mapping=dict(MAPPING)), from_jsonl) == \
        _same(from_jsonl, from_jsonl)
    # one Arrow shard on its own, and a ClassLabel column read back as its names
    labels = sorted({r["label"] for r in rows})
    ds.cast_column("label", datasets.ClassLabel(names=labels)).save_to_disk(str(tmp_path / "cl"))
    items = import_items(task, tmp_path / "cl", mapping=dict(MAPPING))
    assert [i.expected for i in items] == [r["label"] for r in rows]
    shard = next((tmp_path / "ds").glob("*.arrow"))
    assert import_items(task, shard, mapping=dict(MAPPING))[0].id == rows[0]["ticket"]
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"a DatasetDict with splits \['train'\]; import one split's folder"):
        import_items(task, tmp_path / "dd")
    with pytest.raises(DataError, match="no .arrow files"):
        import_items(task, tmp_path)

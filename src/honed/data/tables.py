"""Parquet files and Hugging Face `datasets` data (a `save_to_disk` folder, Arrow files, a hub id) as rows.

The rows come out as `honed.data.reader` gives JSONL rows — (row number, {column: value}) with row numbers
from 1 — so `honed data import` maps fields and reports `file:row` errors the same way for every format.
Values keep their Arrow types (lists and objects stay lists and objects, as in JSONL); a `ClassLabel` column
(an integer that `dataset_info.json` names) becomes its label name. pyarrow is imported only here, and only
when such a file is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from honed.errors import DataError, MissingDependency

BATCH_ROWS = 1024
"""Rows decoded at a time: a large file is streamed, never materialised whole as Python objects."""


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise MissingDependency("pyarrow", extra="data", why="reading Parquet and Arrow files") from None
    return pyarrow


def _rows(batches: Iterator[Any], names: dict[str, list[str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            for col, labels in names.items():
                value = row.get(col)
                if isinstance(value, int) and 0 <= value < len(labels):
                    row[col] = labels[value]
            yield n, row


def read_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) for each row of a Parquet file."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    return _rows(pf.iter_batches(batch_size=BATCH_ROWS), {})


def _arrow_batches(path: Path) -> Iterator[Any]:
    """The record batches of one Arrow file: the IPC stream format `datasets` writes, or the file format."""
    pa = _pyarrow()
    try:
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
            return iter([reader.get_batch(i) for i in range(reader.num_record_batches)])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Arrow file ({exc})") from None
    return iter(reader)


def _class_labels(info: Path) -> dict[str, list[str]]:
    """{column: label names} of the ClassLabel features a `dataset_info.json` declares."""
    if not info.is_file():
        return {}
    try:
        features = json.loads(info.read_text(encoding="utf-8")).get("features") or {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return {}
    return {col: list(f["names"]) for col, f in features.items()
            if isinstance(f, dict) and f.get("_type") == "ClassLabel" and isinstance(f.get("names"), list)}


def read_arrow(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) for each row of an Arrow file, or of a `datasets` `save_to_disk` folder (its
    `data-*.arrow` shards in order, numbered on across shards)."""
    path = Path(path)
    if path.is_file():
        return _rows(_arrow_batches(path), _class_labels(path.parent / "dataset_info.json"))
    if (path / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise DataError(f"{path}: a DatasetDict with splits {splits}; import one split's folder, e.g. "
                        f"{path / (splits[0] if splits else 'train')}")
    shards = sorted(path.glob("*.arrow"))
    if not shards:
        raise DataError(f"{path}: no .arrow files; expected a folder written by datasets' save_to_disk "
                        "(data-00000-of-00001.arrow, dataset_info.json, state.json)")
    state = path / "state.json"
    if state.is_file():  # the shards' order as datasets recorded it
        try:
            files = [path / f["filename"] for f in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
            shards = [f for f in files if f.is_file()] or shards
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            pass
    labels = _class_labels(path / "dataset_info.json")
    return _rows((b for shard in shards for b in _arrow_batches(shard)), labels)


def read_hub(name: str, split: str = "train") -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) of a dataset on the Hugging Face hub (`owner/name` or `owner/name:split`), where a hub
    is reachable; `datasets` caches it as it always does."""
    try:
        import datasets
    except ImportError:
        raise MissingDependency("datasets", extra="train", why="reading a dataset from the Hugging Face hub") from None
    repo, _, wanted = name.partition(":")
    try:
        ds = datasets.load_dataset(repo, split=wanted or split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, bad split: all one message
        raise DataError(f"{name}: cannot load it from the Hugging Face hub ({type(exc).__name__}: {exc}); "
                        "offline, save it with datasets' save_to_disk elsewhere and import the folder") from None
    labels = {col: list(f.names) for col, f in ds.features.items() if isinstance(f, datasets.ClassLabel)}
    return _rows(iter(ds.with_format("arrow").iter(batch_size=BATCH_ROWS)), labels)

"""The store's run folders: unique even when runs start in the same second."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from honed.store import Store

pytestmark = pytest.mark.unit


def test_runs_started_in_the_same_second_get_distinct_folders(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("honed.store.time.strftime", lambda fmt: "20261129-140000")  # all in one second
    store = Store(tmp_path)
    barrier = threading.Barrier(16)

    def start_run(_: int) -> str:
        barrier.wait()
        return store.new_run_dir("eval", "tickets-smollm2")[0]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(start_run, range(16)))
    store.close()
    base = "20261129-140000-eval-tickets-smollm2"
    assert sorted(ids) == sorted([base] + [f"{base}-{n}" for n in range(2, 17)])
    assert sorted(os.listdir(tmp_path / "runs")) == sorted(ids)

"""`honed tune` of the tiny model (tests/tiny_model.py) on a small extraction task: the planned entity swaps are
trained on (the encoded rows include them), recorded in the manifest beside the hash of the task's own train
split, and scale the epochs so the copies add variety, not steps; val passes score record F1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_task

pytestmark = pytest.mark.integration

TOML = """
name = "graph"
kind = "extract"
[data]
train = "train.jsonl"
val = "val.jsonl"
[prompt]
template = "Graph of: {{ sentence }}"
[extract]
schema = {type = "object"}
entities_key = "entities"
relationships_key = "relationships"
[generation]
max_tokens = 24
"""

SERVICES = ["checkout service", "ledger service", "search service"]
STORES = ["Redis", "Postgres", "Kafka"]


def _row(i: int, service: str, store: str) -> dict[str, Any]:
    return {"id": f"r{i}", "sentence": f"The {service} keeps its data in {store}.",
            "expected": {"entities": [{"name": service, "type": "service"}, {"name": store, "type": "datastore"}],
                         "relationships": [{"source": service, "relation": "STORES_DATA_IN", "target": store}]}}


def test_small_extraction_data_trains_on_swapped_copies(tiny_model: Any, tmp_path: Path, honed_home: Path) -> None:
    from honed.task.data import items_hash, load_items
    from honed.task.spec import load_task
    from honed.train.config import TuneConfig
    from honed.train.sft import tune

    rows = [_row(i, s, d) for i, (s, d) in enumerate((s, d) for s in SERVICES for d in STORES)]  # 9 sentences
    task = load_task(write_task(tmp_path / "graph", TOML, {"train": rows, "val": rows[:2]}))
    summary = tune(task, TuneConfig(model=str(tiny_model.hf), max_steps=2, eval_every=2, max_val_items=2,
                                    batch_size=4, replay_fraction=0.0, force=True))
    run = Path(summary.run_dir)
    manifest = json.loads((run / "manifest.json").read_text())
    # 9 examples: min(4, ceil(400 / 9) - 1) = 4 copies each, every sentence has another name of each kind
    assert manifest["settings"]["entity_swaps"] == 4
    assert manifest["data"]["n_swapped"] == 36 and manifest["data"]["n_train"] == 45
    assert manifest["data"]["train_items_sha256"] == items_hash(load_items(task, "train"))
    assert manifest["settings"]["epochs"] == 2.0  # 10 epochs for 9 examples, over 5x as many rows
    assert "swapped copies" in manifest["reasons"]["entity_swaps"]
    curves = json.loads((run / "curves.json").read_text())
    assert curves["metric"] == "record_f1"

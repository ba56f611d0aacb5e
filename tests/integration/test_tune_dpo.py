"""`honed tune --method dpo` on the tiny model (tests/tiny_model.py), a few CPU steps: pairs come from the base
model's own answers, the ids TRL trains on are honed's serving-template ids, the adapter moves, the guardrails
run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from honed.task.spec import load_task
from honed.train.config import TuneConfig
from honed.train.sft import tune

pytestmark = pytest.mark.integration


def test_dpo_tiny_run(tiny_model: Any, planted_task: Path) -> None:
    root = planted_task
    for split, n in (("train", 16), ("val", 8)):
        path = root / "data" / f"{split}.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:n]))
    cfg = TuneConfig(model=str(tiny_model.hf), method="dpo", max_steps=3, eval_every=3, max_val_items=8, batch_size=4, replay_fraction=0.0,
                     force=True)
    summary = tune(load_task(root), cfg)
    run = Path(summary.run_dir)
    manifest = json.loads((run / "manifest.json").read_text())
    dpo = manifest["dpo"]
    assert manifest["method"] == "dpo"
    assert dpo["pairs"] >= 12 and sum(dpo["by_source"].values()) == dpo["pairs"] + len(dpo["skipped_too_long"])
    pairs = json.loads((run / "pairs.json").read_text())
    assert all(p["chosen"] != p["rejected"] and p["chosen"].endswith("<|im_end|>") for p in pairs)
    assert summary.steps == 3 and summary.selection.evals == 1
    assert (run / "best" / "adapter_model.safetensors").is_file()
    from safetensors.torch import load_file

    weights = load_file(run / "best" / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and float(v.abs().max()) > 0 for k, v in weights.items())  # B moved from 0
    curves = json.loads((run / "curves.json").read_text())
    assert [v["step"] for v in curves["val"]] == [0, 3] and curves["train"]

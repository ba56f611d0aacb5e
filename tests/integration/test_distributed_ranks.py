"""Two processes on the CPU (torch.distributed over gloo, accelerate's DDP): `honed tune` of the tiny model
(tests/tiny_model.py) validates, chooses and saves on rank 0 only, and every rank stops where rank 0 decides.

The guardrails run for real (validation passes, checkpoint choice, saving); only their stop decision is planted:
the driver wraps `after_step` to say stop at step 6 of 12 (where rank 0 runs its second validation pass), so the
test does not hang on how selection reads a tiny model's metric. Rank 1 never runs `after_step`, so it can only
stop there by rank 0's broadcast; without it, rank 1 would train on alone and hang in its next collective.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration

DRIVER = textwrap.dedent("""
    import hashlib, json, os, sys
    from pathlib import Path
    import torch
    from honed.task.spec import load_task
    from honed.train.config import TuneConfig
    import honed.train.session as session
    from honed.train.sft import tune

    task, model, out = sys.argv[1:4]
    seen = {}
    original = session.prepare
    def prepare(*a, **kw):  # keep the session to read what this rank did (its model, its passes)
        seen["s"] = original(*a, **kw)
        return seen["s"]
    import honed.train.sft as sft
    sft.prepare = prepare
    guardrails = sft.after_step
    calls = []
    def after_step(s, step, last, eval_every):  # the real guardrails; the stop at step 6 is planted
        calls.append(step)
        return guardrails(s, step, last, eval_every) or step == 6
    sft.after_step = after_step
    summary = tune(load_task(Path(task)), TuneConfig(
        model=model, max_steps=12, eval_every=3, patience=100, on_collapse="warn",
        learning_rate=3e-3, rank=8, alpha=16, batch_size=4, top_layers=2, replay_fraction=0.0, max_val_items=8,
        force=True))
    s = seen["s"]
    lora = {k: v for k, v in s.model.state_dict().items() if "lora_" in k}
    digest = hashlib.sha256(b"".join(lora[k].detach().float().numpy().tobytes() for k in sorted(lora)))
    rank = int(os.environ["RANK"])
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "run_dir": str(s.run_dir), "steps": summary.steps, "val_steps":
        [p["step"] for p in s.curves["val"]], "after_step_calls": calls,
        "lora_sha256": digest.hexdigest(), "world": int(os.environ["WORLD_SIZE"])}))
""")


def test_two_ranks_validate_and_save_once_and_stop_together(tiny_model: Any, planted_task: Path, tmp_path: Path,
                                                            honed_home: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "out"
    out.mkdir()
    # ACCELERATE_USE_CPU: what `accelerate launch --cpu` sets; without it accelerate runs each rank alone on a CPU
    env = {**os.environ, "HONED_HOME": str(honed_home), "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "ACCELERATE_USE_CPU": "true",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), str(driver), str(planted_task), str(tiny_model.hf),
                           str(out)], capture_output=True, text=True, env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # both stopped where rank 0's guardrails said so, step 6 of 12; rank 1 never ran them
    assert r0["steps"] == r1["steps"] == 6
    assert r0["after_step_calls"] == [1, 2, 3, 4, 5, 6] and r1["after_step_calls"] == []
    # validation on rank 0 only: the base pass (before the loop, each on its own copy), then rank 0's passes
    assert r0["val_steps"] == [0, 3, 6] and r1["val_steps"] == [0]
    # one run folder, rank 0's, with the best adapter; rank 1 wrote only to a scratch folder
    runs = sorted((honed_home / "runs").iterdir())
    assert [str(p) for p in runs] == [r0["run_dir"]]
    assert (runs[0] / "best" / "adapter_model.safetensors").is_file()
    assert not Path(r1["run_dir"]).is_relative_to(honed_home) and not (Path(r1["run_dir"]) / "best").exists()
    curves = json.loads((runs[0] / "curves.json").read_text())
    assert [p["step"] for p in curves["val"]] == [0, 3, 6] and curves["best_step"] in (3, 6)
    # DDP kept the copies identical: the same adapter on both ranks after the last step
    assert r0["lora_sha256"] == r1["lora_sha256"]

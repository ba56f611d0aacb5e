"""A real `honed tune` of the tiny model (tests/tiny_model.py) killed with SIGKILL mid-run: it cannot be gated or
exported, and `honed tune --resume RUN` finishes it from its last checkpoint, continuing the same schedule and
curves. 200 steps of a few milliseconds with a validation pass every 50: the kill lands after the first checkpoint
and well before the end.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from honed.store import Store
from honed.train.loop import lr_factor
from tests.conftest import honed_cli

pytestmark = pytest.mark.integration

STEPS, EVERY = 200, 50
CONFIG = """[tune]
model = "{model}"
max_steps = 200
eval_every = 50
max_val_items = 4
batch_size = 2
replay_fraction = 0.0
force = true  # 12 examples: the doomed-config guard would refuse; the mechanics, not the model, are tested
"""


def _honed(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return honed_cli(*args, env={**env, "COLUMNS": "400"}, timeout=timeout)


def test_a_killed_tune_is_refused_by_gate_and_export_and_resumes(tiny_model: Any, planted_task: Path,
                                                                  honed_home: Path) -> None:
    task = planted_task
    train = (task / "data" / "train.jsonl").read_text().splitlines(keepends=True)
    (task / "data" / "train.jsonl").write_text("".join(train[:12]))
    cfg = task.parent / "tune.toml"
    cfg.write_text(CONFIG.format(model=tiny_model.hf))
    env = {**os.environ, "HONED_HOME": str(honed_home), "COLUMNS": "400"}

    proc = subprocess.Popen([sys.executable, "-m", "honed", "tune", str(task), "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 600
    found: list[Path] = []
    while not found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        found = list(honed_home.glob("runs/*/last/checkpoint.json"))  # the first checkpoint: step 50
    assert found, f"no checkpoint appeared (exit {proc.poll()}): {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
    proc.send_signal(signal.SIGKILL)  # mid-run: steps 51..200 and three validation passes were still to come
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run = found[0].parent.parent

    # what the kill left: "running" in the status file and the store, no summary, a checkpoint
    assert json.loads((run / "status.json").read_text())["status"] == "running"
    assert not (run / "summary.json").exists()
    store = Store(honed_home)
    assert [r["status"] for r in store.list_runs() if r["run_id"] == run.name] == ["running"]
    store.close()
    ck = json.loads((run / "last" / "checkpoint.json").read_text())
    start = ck["step"]
    assert start in (50, 100, 150) and ck["plan"]["total"] == STEPS
    assert ck["plan"]["warmup"] == 20  # ceil(0.1 × 200)

    for command in ("gate", "export"):
        r = _honed(command, str(run), env=env, timeout=300)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(lines) == 1, (command, r.stderr)
        assert "the tune run never finished (status.json still says 'running'" in lines[0]
        assert f"honed tune --resume {run}" in r.stderr.replace("\n", "")

    resumed = _honed("tune", "--resume", str(run), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["steps"] == STEPS
    assert summary["resumed_from_step"] == start
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert not (run / "last").exists() and (run / "best" / "adapter_config.json").is_file()
    store = Store(honed_home)
    assert [r["status"] for r in store.list_runs() if r["run_id"] == run.name] == ["complete"]
    store.close()
    manifest = json.loads((run / "manifest.json").read_text())
    assert [(m["from_step"], m["of"]) for m in manifest["resumed"]] == [(start, STEPS)]

    # one curve, each step once: the checkpoint's points, then the resumed run's
    curves = json.loads((run / "curves.json").read_text())
    assert [p["step"] for p in curves["train"]] == list(range(1, STEPS + 1))
    assert [v["step"] for v in curves["val"]] == list(range(0, STEPS + 1, EVERY))
    assert curves["train"][:start] == ck["curves"]["train"]
    # the schedule continues where it was: each step's lr is the 200-step plan's, warmup 20, linear decay
    peak = json.loads((run / "config.json").read_text())["learning_rate"]
    want = [peak * lr_factor("linear", s - 1, 20, STEPS) for s in range(1, STEPS + 1)]
    assert all(math.isclose(p["lr"], w, rel_tol=1e-12) for p, w in zip(curves["train"], want, strict=True))

    # finished now: the gate's reader accepts it
    from honed.gating import read_tune_run

    _, _, adapter = read_tune_run(run)
    assert adapter == run / "best"

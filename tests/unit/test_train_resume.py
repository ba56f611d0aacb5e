"""`honed tune --resume` without a model: the resumed learning-rate schedule is the original one, and a run that
must not be resumed (finished, still running, no checkpoint, DPO) is refused in one line. The kill-and-resume of a
real `honed tune` is tests/integration/test_tune_resume.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from honed.errors import UserError
from honed.train.loop import Plan, lr_factor
from honed.train.resume import ResumedPlan, resume_tune
from honed.train.status import read_status, unfinished_reason, write_status

pytestmark = pytest.mark.unit

GONE = 2 ** 22 + 12345  # above any pid_max: no such process


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant_with_warmup", "constant"])
@pytest.mark.parametrize("start", [3, 4, 10, 19])
def test_the_resumed_schedule_is_the_original_after_warmup(schedule: str, start: int) -> None:
    full = Plan(total=20, warmup_ratio=0.15)  # warmup ceil(3.0) = 3 steps
    assert full.warmup == 3
    resumed = ResumedPlan(total=20 - start, warmup_ratio=0.0, start=start, full_warmup=full.warmup)
    # the loop counts the resumed steps from 0: step k there is step start + k of the original run
    got = [lr_factor(schedule, k, resumed.warmup, resumed.total) for k in range(resumed.total)]
    want = [lr_factor(schedule, start + k, full.warmup, full.total) for k in range(resumed.total)]
    assert got == want


def test_inside_warmup_only_the_ramp_differs() -> None:
    resumed = ResumedPlan(total=18, warmup_ratio=0.0, start=2, full_warmup=4)
    got = [lr_factor("linear", k, resumed.warmup, resumed.total) for k in range(18)]
    want = [lr_factor("linear", 2 + k, 4, 20) for k in range(18)]
    assert got[2:] == want[2:] and got[:2] == [1 / 3, 2 / 3] and want[:2] == [3 / 5, 4 / 5]


def _run(tmp_path: Path, status: str | None, pid: int = GONE, method: str = "lora") -> Path:
    run = tmp_path / "run"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"run_id": "r", "task_dir": str(tmp_path), "base_model": {
        "name": "m"}}))
    (run / "config.json").write_text(json.dumps({"model": "m", "method": method, "rank": 8, "trainable_params": 1}))
    if status is not None:
        write_status(run, status)
        doc = json.loads((run / "status.json").read_text())
        (run / "status.json").write_text(json.dumps({**doc, "pid": pid}))
    return run


def test_status_file_says_running_until_the_end(tmp_path: Path) -> None:
    run = _run(tmp_path, "running")
    assert read_status(run)["status"] == "running"  # type: ignore[index]
    assert unfinished_reason(run) == ("never finished (status.json still says 'running': the process was killed or "
                                      "crashed before the end)")
    write_status(run, "complete")
    assert unfinished_reason(run) == "never finished (no summary.json: the process was killed or crashed before the end)"
    (run / "summary.json").write_text("{}")
    assert unfinished_reason(run) is None


@pytest.mark.parametrize(("status", "pid", "method", "message"), [
    ("complete", GONE, "lora", "the run already finished (complete); nothing to resume: gate it with `honed gate "),
    ("collapsed", GONE, "lora", "the run already finished (collapsed); nothing to resume"),
    ("running", os.getppid(), "lora", f"the run is still running (pid {os.getppid()}); resume only a run whose "),
    ("running", GONE, "lora", ("no checkpoint in last/ (the run stopped before its first validation pass, or it "
                              "trained through TRL, as DPO does, which writes none); start it again with `honed tune`")),
    (None, GONE, "lora", "no status.json, so not a run `honed tune --resume` can continue"),
])
def test_resume_refuses_what_it_cannot_continue(tmp_path: Path, status: str | None, pid: int, method: str,
                                                message: str) -> None:
    run = _run(tmp_path, status, pid, method)
    with pytest.raises(UserError) as err:
        resume_tune(run)
    assert str(err.value).startswith(f"{run}: {message}")


def test_resume_refuses_dpo(tmp_path: Path) -> None:
    run = _run(tmp_path, "interrupted", method="dpo")
    (run / "last").mkdir()
    (run / "last" / "checkpoint.json").write_text(json.dumps({"step": 2, "plan": {}, "curves": {}, "state": {}}))
    with pytest.raises(UserError, match=r"a DPO run trains through TRL and cannot be resumed"):
        resume_tune(run)


def test_cli_resume_takes_no_task_or_options(tmp_path: Path) -> None:
    env = {**os.environ, "HONED_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    cases = {("--resume", "x", "--max-steps", "3"): "error: --resume continues a run with its own task and "
                                                    "config.json; drop --max-steps\n",
             (): "error: give a task folder (honed tune TASK), or --resume RUN to continue a killed run\n",
             ("--resume", "no-such-run"): "error: tune run 'no-such-run' not found (no such folder, and no unique run "
                                          "id; `honed runs` lists them)\n"}
    for args, stderr in cases.items():
        r = subprocess.run([sys.executable, "-m", "honed", "tune", *args], capture_output=True, text=True, env=env,
                           check=False, timeout=120)
        assert (r.returncode, r.stderr) == (2, stderr), args

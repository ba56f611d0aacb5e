"""The curated public API: every name in `honed.__all__` resolves, and importing honed loads no heavy module."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest

import honed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", [n for n in honed.__all__ if n != "__version__"])
def test_every_export_resolves(name: str) -> None:
    obj = getattr(honed, name)
    assert callable(obj) and obj.__module__.startswith("honed.")


def test_stage_functions_are_exported() -> None:
    for stage in ("load_task", "evaluate_task", "compare_runs", "run_arms", "quantize", "plan", "plan_training",
                  "bakeoff", "tune", "gate", "export", "split_task", "open_backend"):
        assert stage in honed.__all__


STAGES = {"plan": "TaskPlan", "bakeoff": "BakeoffDocument", "tune": "TuneSummary", "gate": "GateResult",
          "export": "Package"}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_returns_its_typed_document(stage: str) -> None:
    """`honed.<stage>` is a function (not a package) whose return annotation is the stage's typed object, the
    one `honed` exports too: a stage that went back to returning a dict fails here."""
    fn = getattr(honed, stage)
    assert inspect.isfunction(fn), f"honed.{stage} is {type(fn).__name__}, not the stage function"
    returned = typing.get_type_hints(fn)["return"]
    assert returned is getattr(honed, STAGES[stage]), (stage, returned)


def test_stage_functions_survive_importing_the_stage_packages() -> None:
    """Importing a stage's package sets an attribute of `honed`: it must never be the stage's name."""
    code = ("import inspect, honed, honed.gating.run, honed.exporting.export, honed.train.plan_task, "
            "honed.train.sft, honed.evaluate.bakeoff, honed.cli.gate_cmd, honed.cli.export_cmd; "
            "print([s for s in ('plan', 'bakeoff', 'tune', 'gate', 'export') "
            "if not inspect.isfunction(getattr(honed, s))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_is_light() -> None:
    code = ("import sys, honed, honed.cli; heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'numpy', "
            "'scipy', 'plotly') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""The curated public API: every name in `honed.__all__` resolves, and importing honed loads no heavy module."""

from __future__ import annotations

import subprocess
import sys

import pytest

import honed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", [n for n in honed.__all__ if n != "__version__"])
def test_every_export_resolves(name: str) -> None:
    obj = getattr(honed, name)
    assert callable(obj) and obj.__module__.startswith("honed.")


def test_stage_functions_are_exported() -> None:
    for stage in ("load_task", "evaluate_task", "compare_runs", "run_arms", "quantize", "plan", "plan_training",
                  "tune", "gate_run", "export_run", "split_task", "open_backend"):
        assert stage in honed.__all__


def test_import_is_light() -> None:
    code = ("import sys, honed, honed.cli; heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'numpy', "
            "'scipy', 'plotly') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

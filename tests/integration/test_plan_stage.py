"""`honed.plan(...)` is the stage function `honed plan` prints: the same typed plan, the same document.

On SmolLM2 because `honed plan` is run as a user runs it, without `--model`: its default is the embedded model.
Planning reads the GGUF's header and vocabulary (token counts), never its weights: about a second."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import require_models, write_plan_task

pytestmark = pytest.mark.integration


def test_the_api_and_the_command_give_the_same_plan(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    import typer
    from typer.testing import CliRunner

    import honed
    from honed.cli.plan_cmd import register
    from honed.train.gpus import GpuSpec

    require_models("smollm2-135m")
    root = write_plan_task(tmp_path / "task")

    p = honed.plan(root, "smollm2-135m", gpu="rtx-4060-8gb", quants=["F16", "Q4_K_M"])
    assert isinstance(p, honed.TaskPlan) and isinstance(p.device, GpuSpec) and p.device.name == "rtx-4060-8gb"
    assert p.chat and p.task == "mini" and p.training.lengths.n == 20
    assert [r.quant for r in p.serving] == ["F16", "Q4_K_M"]
    assert p.serving_ctx == max(256, -(-p.training.max_length.value // 256) * 256)  # the planned length, rounded

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["plan", str(root), "--gpu", "rtx-4060-8gb", "--quants", "F16,Q4_K_M",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == json.loads(json.dumps(p.to_dict()))

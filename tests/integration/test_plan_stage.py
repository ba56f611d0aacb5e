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


def test_honed_plan_shows_the_settings_honed_tune_would_run(tiny_model: object) -> None:
    """One set of rules: on examples/extract (tuned prompt, entity swaps, JSON answers) the plan's rank, targets,
    learning rate, epochs, max length, adapted layers and swaps are the ones tune resolves for the same model."""
    import honed
    from honed.data.augment import swap_entities
    from honed.task.chat import from_tokenizer
    from honed.task.data import load_items
    from honed.task.spec import load_task
    from honed.train.config import TuneConfig
    from honed.train.loading import load_base
    from honed.train.plan_defaults import plan_swaps, resolve_settings
    from tests.conftest import EXAMPLES

    model = str(tiny_model.hf)  # type: ignore[attr-defined]
    task = load_task(EXAMPLES / "extract").with_prompt("tuned")
    items = load_items(task, "train")
    config = TuneConfig(model=model, force=True)
    loaded = load_base(model)
    copies, _ = plan_swaps(task, config, len(items))
    swapped = swap_entities(task, items, copies, seed=0)
    settings, _, _ = resolve_settings(task, config, loaded, items, from_tokenizer(loaded.tokenizer), swapped)

    plan = honed.plan(EXAMPLES / "extract", model).training
    assert copies == plan.entity_swaps.value == 4  # 80 sentences, under 400: four swapped copies each
    assert (plan.rank.value, plan.learning_rate.value, plan.epochs.value, plan.max_length.value) == (
        settings["rank"], settings["learning_rate"], settings["epochs"], settings["max_length"])
    assert plan.top_layers.value == settings["top_layers"] is None  # JSON answers: every layer, on a CPU
    assert plan.target_modules.value == settings["target_modules"]
    assert plan.epochs.value == 2.0  # 10 passes over each sentence, spread over its 5 versions

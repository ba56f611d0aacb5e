"""The planner against real things: the shipped GGUFs, transformers, llama.cpp, and a real CPU training step.

The real SmolLM2 and Gemma 3 files, not the tiny model: what is checked is the planner's arithmetic for these
architectures (parameter counts, each tensor's quant type in the shipped files and in rungs llama.cpp makes, the
KV cache and compute buffer llama.cpp allocates for them); a 2-layer model of width 64 has other quant fallbacks
(rows shorter than a K-quant block) and buffers too small to tell a wrong formula. The files are read, not run,
except for the buffers' short loads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from honed.backends.models import resolve_gguf
from honed.errors import ModelNotFound
from honed.train.arch import gguf_tensor_params, read_arch, read_gguf_header
from honed.train.plan import MIB, compute_buffer_bytes, kv_cache_bytes
from honed.train.quant_mix import tensor_types, weights_bytes
from tests.conftest import write_plan_task

pytestmark = pytest.mark.integration

MODELS = {"smollm2-135m": 134_515_008, "gemma3-270m": 268_098_176}  # DESIGN: SmolLM2 134.5M


def gguf_or_skip(alias: str) -> Path:
    try:
        return resolve_gguf(alias)
    except ModelNotFound as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("alias", sorted(MODELS))
def test_parameter_count_equals_the_gguf_tensors(alias: str) -> None:
    path = gguf_or_skip(alias)
    arch = read_arch(alias)
    assert arch.n_params == gguf_tensor_params(path) == MODELS[alias]
    # our header reader against the file itself: the tensor data fills the file after the header
    header = read_gguf_header(path)
    assert path.stat().st_size - sum(t.n_bytes for t in header.tensors) < 8 * MIB


def test_header_reader_agrees_with_gguf_py() -> None:
    gguf = pytest.importorskip("gguf")
    path = gguf_or_skip("smollm2-135m")
    reader = gguf.GGUFReader(str(path))  # slow (every token string), so one model only
    assert sum(int(t.n_elements) for t in reader.tensors) == gguf_tensor_params(path)
    ours = {t.name: (t.type_name, t.n_bytes) for t in read_gguf_header(path).tensors}
    assert ours == {t.name: (t.tensor_type.name, int(t.n_bytes)) for t in reader.tensors}


def test_parameter_count_equals_transformers() -> None:
    """transformers' own model of the GGUF's config, built on the meta device: its architecture counts the
    parameters (tied embeddings once), not its weights (the file's tensors are counted above, for both models).
    SmolLM2 only: reading Gemma's config parses its 262k-token vocabulary (a minute on 2 cores) to confirm a count
    that Gemma's own tensors already confirm."""
    alias = "smollm2-135m"
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = gguf_or_skip(alias)
    config = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert model.num_parameters() == read_arch(alias).n_params == MODELS[alias]


@pytest.mark.parametrize(("alias", "ftype"), [("smollm2-135m", "Q4_1"), ("gemma3-270m", "Q4_K_M")])
def test_quant_mix_matches_the_shipped_files(alias: str, ftype: str) -> None:
    path = gguf_or_skip(alias)
    arch = read_arch(alias)
    real = {t.name: t.type_name for t in read_gguf_header(path).tensors if t.name.endswith(".weight")
            and "norm" not in t.name}
    predicted = {n: t for n, t, _ in tensor_types(arch, ftype) if "norm" not in n}
    assert predicted == real
    assert weights_bytes(arch, ftype) == sum(t.n_bytes for t in read_gguf_header(path).tensors)


def test_quant_mix_matches_rungs_made_by_llama_cpp(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from honed.exporting.quantize import quantize

    gguf_or_skip("smollm2-135m")
    arch = read_arch("smollm2-135m")
    for rung in quantize("smollm2-135m", ["Q8_0", "Q4_K_M", "Q6_K"], tmp_path):
        real = {t.name: t.type_name for t in read_gguf_header(rung.path).tensors}
        predicted = {n: t for n, t, _ in tensor_types(arch, rung.quant) if "norm" not in n}
        assert {n: real[n] for n in predicted} == predicted, rung.quant
        assert weights_bytes(arch, rung.quant) == sum(t.n_bytes for t in read_gguf_header(rung.path).tensors)


def test_kv_cache_and_compute_buffer_match_llama_cpp() -> None:
    pytest.importorskip("llama_cpp")
    gguf_or_skip("smollm2-135m")
    code = textwrap.dedent("""
        import sys, llama_cpp
        from honed.backends.models import resolve_gguf
        llama_cpp.Llama(model_path=str(resolve_gguf(sys.argv[1])), n_ctx=int(sys.argv[2]), n_threads=1,
                        verbose=True).close()
    """)
    for alias in MODELS:
        arch = read_arch(alias)
        for n_ctx in (2048, 8192):
            log = subprocess.run([sys.executable, "-c", code, alias, str(n_ctx)], capture_output=True, text=True,
                                 check=True, timeout=300).stderr
            kv = sum(float(m) for m in re.findall(r"llama_kv_cache: size =\s+([\d.]+) MiB", log))
            compute = float(re.findall(r"CPU compute buffer size =\s+([\d.]+) MiB", log)[-1])
            assert kv_cache_bytes(arch, n_ctx) / MIB == pytest.approx(kv, abs=0.01), (alias, n_ctx)
            assert compute_buffer_bytes(arch, n_ctx) / MIB == pytest.approx(compute, rel=0.05), (alias, n_ctx)


def test_plan_command_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    import typer
    from typer.testing import CliRunner

    from honed.backends.llamacpp import LlamaCppBackend
    from honed.cli.plan_cmd import register
    from honed.task.data import load_items
    from honed.task.prompt import build_request
    from honed.task.spec import load_task
    from honed.train.tokens import token_lengths
    from honed.types import Sampling

    gguf_or_skip("smollm2-135m")
    root = write_plan_task(tmp_path / "task")
    task = load_task(root)
    items = load_items(task, "train")
    lengths, chat = token_lengths(task, items, "smollm2-135m")
    assert chat and len(lengths) == 20
    # the prompt is counted exactly as evaluation renders and tokenizes it; the answer adds "<|im_end|>", the
    # terminator training learns (what the template writes after it is the next turn's)
    with LlamaCppBackend("smollm2-135m", n_ctx=512) as be:
        prompt_ids = be.tokenize(be.render(build_request(task, items[0], Sampling())))
        answer_ids = be._llm.tokenize(f"{items[0].expected}<|im_end|>".encode(), add_bos=False, special=True)
    assert lengths[0][0] == len(prompt_ids)
    assert lengths[0][1] == len(answer_ids)

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["plan", str(root), "--gpu", "rtx-4060-8gb", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Recommendation" in result.output and "seed" in result.output and "Q4_K_M" in result.output
    doc = json.loads(out.read_text())
    assert doc["plan"]["method"]["value"] == "lora" and doc["plan"]["fit"] == "fits"
    assert doc["plan"]["memory"]["total"] > doc["plan"]["memory"]["weights"] > 0
    assert [r["quant"] for r in doc["serving"]][:2] == ["F16", "Q8_0"]

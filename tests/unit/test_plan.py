"""The planner's math: parameter counts, LoRA sizes, activation counts, memory, choices and serving, by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from honed.errors import UserError
from honed.train.arch import LORA_MODULES, ModelArch, arch_from_config
from honed.train.gpus import GpuSpec, find_gpu, load_gpus
from honed.train.plan import (
    GIB,
    MIB,
    compute_buffer_bytes,
    kv_cache_bytes,
    layer_activation_elems,
    length_stats,
    plan_serving,
    plan_training,
    train_memory,
)
from honed.train.quant_mix import bits_per_weight, tensor_types, weights_bytes

pytestmark = pytest.mark.unit

# A toy llama: small enough to count by hand.
TOY = ModelArch(name="toy", family="llama", n_layers=2, hidden=8, intermediate=16, n_heads=2, n_kv_heads=1,
                head_dim=4, vocab=10, tied_embeddings=True, context_length=64)

# Published configs; the expected counts are the models' published parameter counts.
CONFIGS = {
    "qwen2.5-0.5b": ({"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                          "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
                          "max_position_embeddings": 32768}, 494_032_768),
    "llama-3.2-1b": ({"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                          "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
                          "tie_word_embeddings": True, "max_position_embeddings": 131072}, 1_235_814_400),
    "llama-3.2-3b": ({"model_type": "llama", "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                          "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
                          "tie_word_embeddings": True, "max_position_embeddings": 131072}, 3_212_749_824),
    "llama-3-8b": ({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
                        "max_position_embeddings": 8192}, 8_030_261_248),
    "qwen3-4b": ({"model_type": "qwen3", "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
                      "tie_word_embeddings": True, "max_position_embeddings": 40960}, 4_022_468_096),
    "qwen3-8b": ({"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
                      "tie_word_embeddings": False, "max_position_embeddings": 40960}, 8_190_735_360),
    "smollm2-135m": ({"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                          "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True,
                          "max_position_embeddings": 8192}, 134_515_008),
}


def arch(name: str) -> ModelArch:
    return arch_from_config(CONFIGS[name][0], name=name)


# --- architecture -------------------------------------------------------------------------------------------
def test_toy_parameter_count_by_hand() -> None:
    # embeddings 10×8 (tied) + final norm 8 + 2 layers × (q 8×8 + k 8×4 + v 8×4 + o 8×8 + 3 × 8×16 + 2 norms × 8)
    assert TOY.n_params == 80 + 8 + 2 * (64 + 32 + 32 + 64 + 3 * 128 + 16)
    assert TOY.lora_params(2) == 2 * 2 * ((8 + 8) + (8 + 4) * 2 + (8 + 8) + (8 + 16) * 2 + (16 + 8))
    untied = ModelArch(**{**TOY.__dict__, "tied_embeddings": False, "bias_modules": ("q_proj", "k_proj", "v_proj")})
    assert untied.n_params == TOY.n_params + 80 + 2 * (8 + 4 + 4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parameter_counts_match_published_models(name: str) -> None:
    assert arch(name).n_params == CONFIGS[name][1]


def test_lora_sizes_match_the_seeds() -> None:
    # seed 001: Qwen3-4B r=32 on all 7 = 66.1M; Qwen3-8B r=16 = 43.6M (its "0.92%" is PEFT counting the 4-bit
    # weights packed two to a byte). seed 004: one 4096×4096 matrix at r=16 = 131,072.
    assert round(arch("qwen3-4b").lora_params(32, LORA_MODULES) / 1e6, 1) == 66.1
    assert round(arch("qwen3-8b").lora_params(16, LORA_MODULES) / 1e6, 1) == 43.6
    square = ModelArch(**{**TOY.__dict__, "n_layers": 1, "hidden": 4096, "n_heads": 32, "n_kv_heads": 32,
                          "head_dim": 128})
    assert square.lora_params(16, ("q_proj",)) == 131_072


def test_hf_config_details() -> None:
    qwen2 = arch("qwen2.5-0.5b")
    assert qwen2.bias_modules == ("q_proj", "k_proj", "v_proj") and qwen2.norms_per_layer == 2
    gemma = arch_from_config({"model_type": "gemma3", "text_config": {
        "model_type": "gemma3_text", "hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144,
        "sliding_window": 512}})
    assert gemma.n_params == 268_098_176  # the real Gemma 3 270M, as its GGUF counts it
    assert gemma.tied_embeddings and gemma.norms_per_layer == 4 and gemma.qk_norm and gemma.swa_layers == 15
    with pytest.raises(UserError, match="mixture-of-experts"):
        arch_from_config({**CONFIGS["qwen3-4b"][0], "num_experts": 8})
    with pytest.raises(UserError, match="hidden_size"):
        arch_from_config({"model_type": "llama"})


# --- training memory ----------------------------------------------------------------------------------------
def test_activation_elements_by_hand() -> None:
    # no dropout: 2 norms × (8+1) + q,k,v,out (8+4+4+8) + lse 2 + MLP 3×16 + LoRA inputs (attn 8, mlp 8, down 16)
    # + 7 A outputs of rank 2
    assert layer_activation_elems(TOY, LORA_MODULES, 2, 0.0) == 18 + 24 + 2 + 48 + 32 + 14
    # dropout: each adapter keeps its dropped input and mask (2 × in_features)
    assert layer_activation_elems(TOY, LORA_MODULES, 2, 0.05) == 18 + 24 + 2 + 48 + 2 * (8 * 6 + 16) + 14
    # attention only, no dropout: one shared input
    assert layer_activation_elems(TOY, ("q_proj", "k_proj", "v_proj", "o_proj"), 2, 0.0) == 18 + 24 + 2 + 48 + 8 + 8


def test_cpu_train_memory_by_hand() -> None:
    m = train_memory(TOY, method="lora", precision="fp32", gradient_checkpointing=False, micro_batch=2, seq_len=4,
                     rank=2, targets=LORA_MODULES, dropout=0.0, on_gpu=False)
    tokens = 8
    assert m.weights == TOY.n_params * 4
    assert m.adapter == TOY.lora_params(2) * 16  # fp32 weight + grad + AdamW m, v
    assert m.activations == tokens * 2 * 138 * 4
    assert m.logits == tokens * 10 * 16
    assert m.overhead == 440 * MIB + int(0.2 * (m.activations + m.logits))
    assert m.total == m.weights + m.adapter + m.activations + m.logits + m.overhead


# (model, method, checkpointing, tokens, peak reserved + CUDA context in GiB) measured on an H100 (torch 2.11,
# bf16 LoRA / bitsandbytes NF4 QLoRA, r=16 on all 7 projections, dropout 0.05, AdamW, 2 steps).
H100 = [
    ("smollm2-135m", "lora", False, 2048, 4.86), ("smollm2-135m", "lora", True, 2048, 2.82),
    ("smollm2-135m", "qlora", True, 512, 1.43), ("qwen2.5-0.5b", "lora", False, 512, 4.04),
    ("qwen2.5-0.5b", "lora", True, 2048, 7.15), ("qwen2.5-0.5b", "qlora", True, 2048, 6.28),
    ("llama-3.2-1b", "lora", False, 2048, 12.37), ("llama-3.2-1b", "qlora", True, 2048, 7.44),
    ("qwen3-4b", "lora", False, 512, 14.49), ("qwen3-4b", "lora", True, 2048, 13.78),
    ("qwen3-4b", "qlora", True, 2048, 10.49), ("qwen3-4b", "qlora", True, 512, 6.00),
]


@pytest.mark.parametrize(("name", "method", "ckpt", "tokens", "measured_gib"), H100)
def test_gpu_memory_reproduces_h100_measurements(name: str, method: str, ckpt: bool, tokens: int,
                                                 measured_gib: float) -> None:
    m = train_memory(arch(name), method=method, precision="bf16", gradient_checkpointing=ckpt, micro_batch=1,
                     seq_len=tokens, rank=16, targets=LORA_MODULES, dropout=0.05, on_gpu=True)
    assert m.total / GIB == pytest.approx(measured_gib, rel=0.10)


def test_seed_001_peak_vram_cross_check() -> None:
    # seed 001: Qwen3-4B, bf16 LoRA r=32 on all 7, max_length 2048, batch 1: peak 13.37 GB on the RX 9070 XT.
    # Its figure is the framework's allocated peak, so compare it with ours less CUDA context and slack.
    m = train_memory(arch("qwen3-4b"), method="lora", precision="bf16", gradient_checkpointing=True, micro_batch=1,
                     seq_len=2048, rank=32, targets=LORA_MODULES, dropout=0.05, on_gpu=True)
    allocated = m.weights + m.adapter + m.activations + m.logits
    assert allocated == pytest.approx(13.37e9, rel=0.10)


# --- choices ------------------------------------------------------------------------------------------------
def test_tiny_model_tiny_data_on_cpu() -> None:
    plan = plan_training(arch("smollm2-135m"), token_lengths=[(60, 4)] * 64, memory_bytes=24 * 10**9)
    assert plan.method.value == "lora" and plan.precision.value == "fp32" and "CUDA" in plan.method.reason
    assert plan.rank.value == 8 and plan.alpha.value == 16 and plan.target_modules.value == list(LORA_MODULES)
    assert plan.learning_rate.value == 1e-3 and "measured on the demo task" in plan.learning_rate.reason
    assert plan.epochs.value == 10 and "early stopping" in plan.epochs.reason
    assert plan.micro_batch.value * plan.grad_accum.value == 8
    assert plan.gradient_checkpointing.value is False and plan.fit == "fits"
    # 4-token answers on a CPU: the upper 15 of 30 layers, half the adapter of every layer's 2,442,240
    assert plan.top_layers.value == 15 and plan.trainable_params == 2_442_240 // 2
    assert plan.max_length.value == 128 and plan.entity_swaps.value == 0  # 60 + 4 + 8, a multiple of 64
    assert all(c.reason for _, c in plan.choices())


def test_seed_000_setting_gets_the_gentle_recipe() -> None:
    # a 3B model, 542 short-answer examples, an RTX 4060 8 GB: seed 000's collapse, planned again
    plan = plan_training(arch("llama-3.2-3b"), token_lengths=[(700, 3)] * 542, device=find_gpu("rtx-4060-8gb"))
    assert plan.method.value == "qlora" and "Seed 001" in plan.method.reason
    assert plan.rank.value == 8 and plan.target_modules.value == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert plan.learning_rate.value == 5e-5 and "seed 000" in plan.learning_rate.reason
    assert plan.epochs.value == 3 and plan.gradient_checkpointing.value
    assert plan.top_layers.value is None  # every layer on a GPU
    # and its 8B did not fit even in 4-bit
    eight = plan_training(arch("llama-3-8b"), token_lengths=[(700, 3)] * 542, device=find_gpu("rtx-4060-8gb"))
    assert eight.fit == "does not fit"


def test_seed_001_setting_on_rdna() -> None:
    long = [(700, 1275)] * 63
    plan = plan_training(arch("qwen3-4b"), token_lengths=long, device=find_gpu("rx-9070xt-16gb"))
    assert plan.method.value == "lora" and plan.rank.value == 16 and plan.learning_rate.value == 5e-5
    assert "seed 001" in plan.rank.reason
    assert plan.max_length.value == 1984 and plan.gradient_checkpointing.value  # 1275 + 700 + 8, never cut
    assert all(o.method == "lora" for o in plan.options) and any("HQQ" in n for n in plan.notes)
    with pytest.raises(UserError, match="no CUDA"):
        plan_training(arch("qwen3-4b"), token_lengths=long, device=find_gpu("rx-9070xt-16gb"), method="qlora")
    with pytest.raises(UserError, match="CPU"):
        plan_training(arch("smollm2-135m"), token_lengths=long, method="qlora")


def test_big_data_defaults() -> None:
    plan = plan_training(arch("qwen2.5-0.5b"), token_lengths=[(100, 10)] * 10_000, device=find_gpu("a100-80gb"))
    assert plan.rank.value == 16 and plan.epochs.value == 2 and plan.dropout.value == 0.05
    # what `honed tune` runs unless told otherwise: [tune] batch_size 8 × grad_accum 1, 5e-4 under 1B
    assert plan.micro_batch.value * plan.grad_accum.value == 8 and plan.learning_rate.value == 5e-4


def test_max_length_never_cuts_completions() -> None:
    lengths = [(10, 100)] + [(20, 5)] * 18 + [(1000, 3)]
    stats = length_stats(lengths)
    assert (stats.prompt_p95, stats.completion_max) == (20, 100)
    plan = plan_training(TOY, token_lengths=lengths)
    assert plan.max_length.value == 64  # 120 wanted, capped at the toy's context
    assert plan.skipped_examples == 1 and plan.truncated_prompts == 1  # the 100-token answer; the long prompt
    assert "skipped" in plan.max_length.reason and "capped" in plan.max_length.reason
    with pytest.raises(UserError, match="empty"):
        length_stats([])


# --- serving ------------------------------------------------------------------------------------------------
def test_kv_cache_and_compute_buffer_by_hand() -> None:
    smol = arch("smollm2-135m")
    # 2 (K and V) × 30 layers × 3 KV heads × 64 × 2048 cells × 2 bytes: llama.cpp reports 45.00 MiB
    assert kv_cache_bytes(smol, 2048) == 2 * 30 * 3 * 64 * 2048 * 2 == 45 * MIB
    assert kv_cache_bytes(smol, 2048, n_parallel=2, kv_type="Q8_0") == int(45 * MIB * 2 * 34 / 32 / 2)
    # logits of a 512-token micro-batch (llama.cpp reports 99.38 MiB at 2k, 166.38 at 8k)
    assert compute_buffer_bytes(smol, 2048) / MIB == pytest.approx(99.38, rel=0.01)
    assert compute_buffer_bytes(smol, 8192) / MIB == pytest.approx(166.38, rel=0.05)


def test_bits_per_weight_match_gguf_block_sizes() -> None:
    gguf = pytest.importorskip("gguf")
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        if qtype.name in ("Q4_K", "Q8_0", "Q5_0", "Q6_K", "F16", "Q4_1", "IQ4_NL"):
            assert bits_per_weight(qtype.name) == size * 8 / block
    assert (bits_per_weight("Q4_K"), bits_per_weight("Q8_0"), bits_per_weight("F16")) == (4.5, 8.5, 16.0)


def test_quant_mix_rules() -> None:
    smol = arch("smollm2-135m")  # hidden 576: no k-quant fits its rows
    types = {n: t for n, t, _ in tensor_types(smol, "Q4_K_M")}
    assert types["token_embd.weight"] == "Q8_0" and types["blk.0.attn_q.weight"] == "Q5_0"
    # ffn_down's rows are 1536 = 6 × 256: k-quants fit, with Q6_K on llama.cpp's "more bits" layers
    assert types["blk.0.ffn_down.weight"] == "Q6_K" and types["blk.4.ffn_down.weight"] == "Q4_K"
    big = arch("llama-3-8b")
    types = {n: t for n, t, _ in tensor_types(big, "Q4_K_M")}
    assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == "Q4_K"
    more = [i for i in range(32) if types[f"blk.{i}.attn_v.weight"] == "Q6_K"]
    assert more == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]  # llama.cpp's use_more_bits
    assert weights_bytes(big, "Q4_K_M") * 8 / big.n_params == pytest.approx(4.9, abs=0.1)  # ~4.9 bpw, as published
    with pytest.raises(ValueError):
        tensor_types(big, "Q9_X")


def test_plan_serving_rows() -> None:
    rows = plan_serving(arch("smollm2-135m"), ("F16", "q8_0", "Q4_K_M"), n_ctx=2048, memory_bytes=GIB)
    assert [r.quant for r in rows] == ["F16", "Q8_0", "Q4_K_M"]
    assert rows[0].weights == 134_515_008 * 2 + 61 * 576 * 2  # the 61 norms stay F32
    assert rows[0].bits_per_weight > rows[1].bits_per_weight > rows[2].bits_per_weight
    assert all(r.kv_cache == 45 * MIB and r.fit == "fits" for r in rows)
    with pytest.raises(UserError):
        plan_serving(arch("smollm2-135m"), ("Q9",))


# --- GPU table and CLI --------------------------------------------------------------------------------------
def test_gpu_table(tmp_path: Path) -> None:
    gpus, as_of = load_gpus()
    assert len(gpus) == 10 and as_of
    assert gpus["rx-9070xt-16gb"].cuda is False and gpus["h200-141gb"].memory_gb == 141
    assert isinstance(find_gpu("rtx-4060-8gb"), GpuSpec) and find_gpu("rtx-4060-8gb").memory_bytes == 8 * 10**9
    with pytest.raises(UserError, match="rtx-4090-24gb"):
        find_gpu("gtx-1080")
    bad = tmp_path / "g.toml"
    bad.write_text("[gpus.x]\nmemory = 3\n")
    with pytest.raises(UserError, match="memory_gb"):
        load_gpus(bad)


def test_cli_rejects_unknown_method(tmp_path: Path) -> None:
    from honed.cli.plan_cmd import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # two commands, so `plan` stays a subcommand
    result = CliRunner().invoke(app, ["plan", str(tmp_path), "--method", "dora"])
    assert result.exit_code != 0 and "expected auto, lora or qlora" in str(result.exception)


def test_top_layers_follow_the_answers_length_on_a_cpu() -> None:
    """Labels are learned in the upper half on a CPU (faster steps); a JSON record gets every layer (measured on
    examples/extract: val record F1 0.92 vs 0.76); a GPU always gets every layer; the user's number wins."""
    from honed.train.plan_defaults import SHORT_ANSWER, plan_top_layers

    assert plan_top_layers(30, False, 3)[0] == 15
    assert plan_top_layers(30, False, SHORT_ANSWER)[0] == 15
    top, why = plan_top_layers(30, False, 103)
    assert top is None and why.startswith("every layer: answers of 103 tokens")
    assert plan_top_layers(30, True, 3)[0] is None
    assert plan_top_layers(4, False, 3)[0] is None  # too few layers to halve
    assert plan_top_layers(30, False, 103, configured=10) == (10, "set by you")
    assert plan_top_layers(30, False, 3, configured=40) == (30, "set by you (every layer)")

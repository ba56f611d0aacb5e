"""The planner: memory for training and serving, and the hyperparameters to start from, each with its reason.

Pure functions. `plan_training` takes a `ModelArch`, the token lengths of the task's training examples and a
device; `plan_serving` takes a `ModelArch` and a context size. Nothing is loaded, nothing is read. The
hyperparameters (rank, targets, learning rate, epochs, max length, adapted layers) are `honed tune`'s own rules
(`honed.train.plan_defaults`), so the plan shows what a tune would run; this module adds the memory.

The memory model is structural (it counts what autograd keeps per token and per layer) with a few constants
measured, not guessed: on this project's 2-core CPU machine (SmolLM2-135M, fp32, torch 2.13) and on an H100
(random-init SmolLM2/Qwen2.5-0.5B/Llama-3.2-1B/Qwen3-4B shapes, bf16 LoRA and bitsandbytes QLoRA, torch 2.11).
The seeds disagree on defaults; each choice says which evidence it follows:
- seed 000: QLoRA r=16 on all 7 projections, lr 2e-4, 3 epochs, collapsed a 3B model on 542 examples
  ("NONE to everything"); its post-mortem asks for r 4–8, lr 5e-5, fewer target modules.
- seed 001: bf16 LoRA r=32 on all 7, lr 5e-5, 5 epochs, 63 examples, a 4B model: the best fine-tune it made; a
  smaller model in bf16 with a higher rank beat a bigger one in 4-bit on the same 16 GB.
- seed 004: lr 1e-4–2e-4 for 7B QLoRA, r=8 below 5k examples, 1–2 epochs on 5k+, select on validation.
- measured here: SmolLM2-135M, 64 examples, 4 labels: 1 epoch at TRL's default lr collapsed onto one label
  (0.19); 8 epochs at lr 5e-4 reached 16/16. Qwen2.5-0.5B learned in 1 epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from honed.errors import UserError
from honed.train.arch import ModelArch
from honed.train.gpus import GpuSpec
from honed.train.quant_mix import weights_bytes

GIB = 1 << 30
MIB = 1 << 20

# --- measured constants -------------------------------------------------------------------------------------
# CPU: RSS of python + torch + transformers + peft once imported (380 MiB here) plus what loading a model
# leaves behind besides its weights (~45 MiB).
CPU_RUNTIME_BYTES = 440 * MIB
# GPU: CUDA context + cuBLAS workspace, outside PyTorch's allocator (0.60–0.76 GiB on the H100, CUDA 13).
CUDA_CONTEXT_BYTES = int(0.75 * GIB)
# Memory held beyond the live tensors at the peak, as a fraction of the activations + logits, by (GPU?, ckpt?).
# CPU: glibc keeps freed activation buffers mapped: the step's RSS growth was 1.0–1.4× its live bytes without
# checkpointing (SmolLM2, 512 and 2048 tokens, four runs) and 2.2–3.2× with it (recomputing blocks churns the
# heap). GPU: PyTorch's caching allocator reserved 5–11% more than the activations without checkpointing and
# 29–56% more with it (H100, four models, 512–2048 tokens). The planner takes the middle of each range.
SLACK = {(False, False): 0.20, (False, True): 1.5, (True, False): 0.08, (True, True): 0.40}
# Loss on the logits, bytes per (token × vocabulary entry) at the peak (start of backward): fp32 keeps the
# logits, log-softmax and two gradients (16, measured on CPU); bf16 keeps bf16 logits, the fp32 log-softmax and
# gradient and a bf16 gradient (12; 11.5–12.2 measured on the H100).
LOGIT_BYTES = {"fp32": 16, "half": 12}
# bitsandbytes NF4 with double quantization: 4 bits + an 8-bit absmax per 64 weights + an fp32 per 256 blocks.
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
# LoRA weights stay fp32 (PEFT upcasts adapters of a half-precision base): weight + grad + AdamW m and v.
ADAPTER_BYTES_PER_PARAM = 4 + 4 + 8
USABLE = 0.90  # above 90% of the device it is "tight": seed 001's 8B run at 15.95 of 16 GB was one step from OOM

Method = Literal["auto", "lora", "qlora"]


@dataclass(frozen=True)
class Choice:
    """One recommendation and why."""

    value: Any
    reason: str


@dataclass(frozen=True)
class TrainMemory:
    """Peak memory of one training configuration, in bytes, by component."""

    method: str  # lora | qlora
    precision: str  # fp32 | bf16 | fp16 (the frozen base; QLoRA: nf4 linears)
    gradient_checkpointing: bool
    micro_batch: int
    seq_len: int
    weights: int
    adapter: int  # LoRA weights, their gradients and AdamW's two moments
    activations: int  # what autograd keeps for the transformer blocks
    logits: int  # the loss over the vocabulary
    overhead: int  # runtime (CPU) or CUDA context + allocator slack (GPU)

    @property
    def total(self) -> int:
        return self.weights + self.adapter + self.activations + self.logits + self.overhead

    @property
    def label(self) -> str:
        return f"{self.method} {self.precision}{' +ckpt' if self.gradient_checkpointing else ''} ×{self.micro_batch}"


def layer_activation_elems(arch: ModelArch, targets: Sequence[str], rank: int, dropout: float) -> int:
    """Elements autograd keeps per token in one block of a LoRA-wrapped model (SDPA attention).

    Counted from what the saved-tensor hooks show on SmolLM2 (exact to 0.3% in fp32, dropout 0 and 0.05).
    """
    h, i, q, kv = arch.hidden, arch.intermediate, arch.q_dim, arch.kv_dim
    elems = arch.norms_per_layer * (h + 1)  # each RMSNorm keeps its input and 1/rms
    elems += 2 * q + 2 * kv + arch.n_heads  # SDPA keeps q, k, v, its output and the log-sum-exp: no s² scores
    elems += (q + kv) if arch.qk_norm else 0
    elems += 3 * i  # gate out, up out, act(gate): the operands of the MLP's products
    shapes = arch.linear_shapes()
    if dropout > 0:
        # Each adapter drops out its own copy of the input and keeps it and the (float) mask: costly.
        elems += sum(2 * shapes[m][0] for m in targets)
    else:
        # lora_A needs its input; q/k/v share one, gate/up share one, o's is the SDPA output kept already.
        elems += h if set(targets) & {"q_proj", "k_proj", "v_proj"} else 0
        elems += h if set(targets) & {"gate_proj", "up_proj"} else 0
        elems += i if "down_proj" in targets else 0
    return elems + rank * len(targets)


def train_memory(arch: ModelArch, *, method: str, precision: str, gradient_checkpointing: bool, micro_batch: int,
                 seq_len: int, rank: int, targets: Sequence[str], dropout: float, on_gpu: bool) -> TrainMemory:
    """Peak memory of one optimizer step at `micro_batch` × `seq_len` tokens (every sequence padded to it).

    QLoRA is modelled with gradient checkpointing only, as PEFT's k-bit preparation runs it; without it the
    H100 measured 1.5–2.1× the bf16 LoRA activations (fp32 hidden states, math attention), not modelled here.
    """
    tokens = micro_batch * seq_len
    half = precision in ("bf16", "fp16")
    act_bytes = 2 if half or method == "qlora" else 4
    if method == "qlora":
        # PEFT's QLoRA recipe (prepare_model_for_kbit_training) keeps embeddings and norms in fp32.
        weights = int(arch.linear_params * NF4_BYTES_PER_PARAM) + (arch.n_params - arch.linear_params) * 4
    else:
        weights = arch.n_params * (2 if half else 4)
    adapter = arch.lora_params(rank, targets) * ADAPTER_BYTES_PER_PARAM
    per_layer = layer_activation_elems(arch, targets, rank, dropout) * act_bytes
    if act_bytes == 2:  # half-precision RMSNorms compute in fp32 and keep an fp32 copy of their input
        per_layer += 4 * (arch.norms_per_layer * arch.hidden + ((arch.q_dim + arch.kv_dim) if arch.qk_norm else 0))
    logits = tokens * arch.vocab * LOGIT_BYTES["half" if act_bytes == 2 else "fp32"]
    if gradient_checkpointing:
        # Only each block's input is kept (fp32 under QLoRA: its fp32 embeddings make the hidden states fp32);
        # one block is recomputed at a time, after the loss's buffers are gone: the peak is the larger of the two.
        inputs = tokens * arch.n_layers * arch.hidden * (4 if method == "qlora" or not half else 2)
        activations = inputs + max(0, tokens * per_layer - logits)
    else:
        activations = tokens * arch.n_layers * per_layer
    slack = int(SLACK[on_gpu, gradient_checkpointing] * (activations + logits))
    overhead = slack + (CUDA_CONTEXT_BYTES if on_gpu else CPU_RUNTIME_BYTES)
    return TrainMemory(method, precision, gradient_checkpointing, micro_batch, seq_len, weights, adapter,
                       activations, logits, overhead)


# --- data lengths -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LengthStats:
    """Token lengths of the training examples as the model's tokenizer counts them (chat template included)."""

    n: int
    prompt_p50: int
    prompt_p95: int
    prompt_max: int
    completion_p50: int
    completion_max: int


def _pct(values: list[int], p: float) -> int:
    # nearest-rank percentile: a length that really occurs
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def length_stats(token_lengths: Sequence[tuple[int, int]]) -> LengthStats:
    if not token_lengths:
        raise UserError("no training examples to plan from: the task's train split is empty")
    prompts = [p for p, _ in token_lengths]
    comps = [c for _, c in token_lengths]
    return LengthStats(len(prompts), _pct(prompts, 50), _pct(prompts, 95), max(prompts), _pct(comps, 50),
                       max(comps))


# --- the plan -----------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """What `honed plan` recommends for one model, task and device; every choice carries its reason."""

    model: str
    n_params: int
    device: str
    memory_bytes: int | None
    lengths: LengthStats
    method: Choice
    precision: Choice
    gradient_checkpointing: Choice
    micro_batch: Choice
    grad_accum: Choice
    rank: Choice
    alpha: Choice
    dropout: Choice
    target_modules: Choice
    learning_rate: Choice
    epochs: Choice
    early_stopping_patience: Choice
    max_length: Choice
    top_layers: Choice
    """The upper layers LoRA adapts (None: every layer)."""
    entity_swaps: Choice
    """Swapped copies per training example (extraction tasks with few examples)."""
    trainable_params: int
    memory: TrainMemory
    fit: str  # fits | tight | does not fit | unknown
    options: list[TrainMemory] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    truncated_prompts: int = 0
    skipped_examples: int = 0

    CHOICES = ("method", "precision", "gradient_checkpointing", "micro_batch", "grad_accum", "rank", "alpha",
               "dropout", "target_modules", "top_layers", "learning_rate", "epochs", "entity_swaps",
               "early_stopping_patience", "max_length")

    def choices(self) -> list[tuple[str, Choice]]:
        return [(name, getattr(self, name)) for name in self.CHOICES]

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for opt in (doc["memory"], *doc["options"]):
            opt["total"] = sum(opt[k] for k in ("weights", "adapter", "activations", "logits", "overhead"))
        return doc


def _fit(total: int, memory: int | None) -> str:
    if memory is None:
        return "unknown"
    return "fits" if total <= USABLE * memory else "tight" if total <= memory else "does not fit"


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _max_length(lengths: LengthStats, token_lengths: Sequence[tuple[int, int]], context: int
                ) -> tuple[Choice, int, int]:
    from honed.train.plan_defaults import choose_max_length

    need, why = choose_max_length(lengths.prompt_p95, lengths.completion_max)
    value = min(context, need)
    truncated = sum(1 for p, c in token_lengths if c < value < p + c)
    skipped = sum(1 for _, c in token_lengths if c >= value)
    why += " (seed 001's truncated completions taught truncated output)"
    if value < need:
        why += f"; capped at the model's context ({context})"
    if truncated:
        why += f"; {truncated} longer prompt(s) lose their middle"
    if skipped:
        why += f"; {skipped} example(s) whose answer alone does not fit are skipped"
    return Choice(value, why), truncated, skipped


def plan_training(arch: ModelArch, *, token_lengths: Sequence[tuple[int, int]], n_examples: int | None = None,
                  device: GpuSpec | Literal["cpu"] = "cpu", method: Method = "auto",
                  memory_bytes: int | None = None, model_name: str | None = None,
                  swaps: tuple[int, str] = (0, "none")) -> Plan:
    """Plan a LoRA/QLoRA fine-tune of `arch` on examples of these (prompt, completion) token lengths.

    The hyperparameters are the ones `honed tune` would choose (`honed.train.plan_defaults`: one set of rules);
    `swaps` is tune's entity-swap plan for the task, (copies per example, why). `memory_bytes` is the device's
    memory (default: the GPU preset's; for "cpu" the caller passes the RAM, or None when unknown). Raises
    UserError where the method cannot run on the device (QLoRA without CUDA).
    """
    from honed.train.config import TuneConfig
    from honed.train.plan_defaults import (
        choose_epochs,
        choose_learning_rate,
        choose_rank,
        choose_targets,
        plan_top_layers,
    )

    defaults = TuneConfig()
    on_gpu = device != "cpu"
    gpu = device if isinstance(device, GpuSpec) else None
    memory = memory_bytes if memory_bytes is not None else (gpu.memory_bytes if gpu else None)
    lengths = length_stats(token_lengths)
    n = n_examples or lengths.n
    if method == "qlora" and (gpu is None or not gpu.cuda):
        where = "on a CPU" if gpu is None else f"on {gpu.name} (no CUDA)"
        raise UserError(f"QLoRA cannot run {where}: bitsandbytes' 4-bit kernels need a CUDA GPU (seed 001 used "
                        "HQQ on AMD RDNA 4, which honed does not drive); use --method lora")
    half = "bf16" if gpu is None or gpu.bf16 else "fp16"
    precision = half if on_gpu else "fp32"
    rank = Choice(*choose_rank(n, arch.n_params, lengths.completion_p50))
    targets = Choice(*choose_targets(arch.n_params, n))
    with_drop = layer_activation_elems(arch, targets.value, rank.value, defaults.dropout)
    no_drop = layer_activation_elems(arch, targets.value, rank.value, 0.0)
    dropout = Choice(defaults.dropout, "a little regularization, as seeds 000 and 001 used; it costs "
                                       f"{with_drop / no_drop - 1:.0%} more block activations (each adapter keeps "
                                       "its dropped input and mask)")
    max_len, truncated, skipped = _max_length(lengths, token_lengths, arch.context_length)
    effective = defaults.batch_size * defaults.grad_accum
    copies, swaps_why = swaps
    top, top_why = plan_top_layers(arch.n_layers, on_gpu, lengths.completion_p50)

    modes: list[tuple[str, str, bool]] = []
    if method in ("auto", "lora"):
        modes += [("lora", precision, False), ("lora", precision, True)]
    if method in ("auto", "qlora") and gpu is not None and gpu.cuda:
        modes.append(("qlora", f"nf4+{half}", True))  # PEFT's k-bit preparation turns checkpointing on
    micro_sizes = [m for m in (8, 4, 2, 1) if m <= effective]
    options, chosen = [], None
    for mode, prec, ckpt in modes:
        fitted = [train_memory(arch, method=mode, precision=prec.removeprefix("nf4+"), gradient_checkpointing=ckpt,
                               micro_batch=m, seq_len=max_len.value, rank=rank.value, targets=targets.value,
                               dropout=dropout.value, on_gpu=on_gpu) for m in micro_sizes]
        best = next((f for f in fitted if _fit(f.total, memory) in ("fits", "unknown")), fitted[-1])
        options.append(best)
        if chosen is None and _fit(best.total, memory) in ("fits", "unknown"):
            chosen = best
    if chosen is None:
        chosen = min(options, key=lambda o: o.total)
    fit = _fit(chosen.total, memory)
    mem_txt = _gb(memory) if memory else "unknown memory"
    lora_opts = [o for o in options if o.method == "lora"]

    if not on_gpu:
        method_c = Choice("lora", "on a CPU: LoRA with an fp32 base. QLoRA is impossible without CUDA "
                                  "(bitsandbytes' 4-bit kernels), and CPU bf16 matmuls are slow and less exact")
    elif chosen.method == "lora":
        method_c = Choice("lora", f"{precision} LoRA fits ({_gb(chosen.total)} of {mem_txt}): lossless weights. "
                                  "Seed 001: a 4B model in bf16 at r=32 beat an 8B in 4-bit at r=16 on 16 GB")
    elif lora_opts:
        method_c = Choice("qlora", f"{precision} LoRA needs {_gb(min(o.total for o in lora_opts))}, over 90% of "
                                   f"{mem_txt}; QLoRA fits at {_gb(chosen.total)}. Seed 001: a smaller model in "
                                   "bf16 with a higher rank can beat a bigger one in 4-bit: bake both off")
    else:
        method_c = Choice("qlora", "asked for with --method qlora")
    if fit == "does not fit":
        method_c = Choice(chosen.method, f"nothing fits in {mem_txt}: the smallest option ({chosen.label}) needs "
                                         f"{_gb(chosen.total)}; shorten max_length ({max_len.value}), or pick a "
                                         "smaller model")
    if chosen.method == "qlora":
        precision_c = Choice(chosen.precision, "4-bit NF4 projections (double quantization), bf16 compute; "
                                               "embeddings and norms fp32 as PEFT's k-bit preparation leaves them")
    elif on_gpu:
        precision_c = Choice(precision, "bf16: fp32's range at half the memory" if precision == "bf16" else
                             f"{gpu.name if gpu else 'this GPU'} has no bf16: fp16 with loss scaling")
    else:
        precision_c = Choice("fp32", "fp32 on CPU (as honed's transformers backend runs it)")
    if chosen.method == "qlora":
        ckpt_c = Choice(True, "QLoRA: PEFT's k-bit preparation turns it on (without it the H100 measured "
                              "1.5–2× the bf16 activations)")
    elif chosen.gradient_checkpointing:
        no_ckpt = next(o for o in options if o.method == "lora" and not o.gradient_checkpointing)
        ckpt_c = Choice(True, f"without it the step needs {_gb(no_ckpt.total)} (over 90% of {mem_txt}); "
                              "recomputing each block costs ~30% more time")
    else:
        ckpt_c = Choice(False, "fits without it, and recomputing each block would cost ~30% more time"
                        + ("; on CPU it also saves less RSS than it seems (the heap keeps the recomputed "
                           "blocks' buffers)" if not on_gpu else ""))
    micro_c = Choice(chosen.micro_batch, f"the largest of {'/'.join(map(str, micro_sizes))} whose peak fits "
                                         f"(every sequence padded to {max_len.value} tokens: a worst case)")
    accum_c = Choice(effective // chosen.micro_batch,
                     f"effective batch {effective} (`[tune] batch_size` × `grad_accum`): seeds 000 and 001 used 8 "
                     "on tens to hundreds of examples, seed 004 32–64 on thousands (set them for that much data)")
    trainable = arch.lora_params(rank.value, targets.value)
    if top:
        trainable = trainable * top // arch.n_layers  # the same modules, in the top layers only
    notes = [f"{trainable:,} trainable parameters, {100 * trainable / arch.n_params:.2f}% of {arch.n_params:,}"]
    if n < 200:
        notes.append(f"only {n} training examples: seed 004 calls 500 a floor, SmolLM2 learned from 64 here; the "
                     "val metric decides, and the gate's confidence interval will be wide")
    if gpu is not None and not gpu.cuda:
        notes.append(f"{gpu.name} has no CUDA: QLoRA through bitsandbytes is not available (seed 001 used HQQ)")
    return Plan(
        model=model_name or arch.name, n_params=arch.n_params,
        device=gpu.name if gpu else "cpu", memory_bytes=memory, lengths=lengths, method=method_c,
        precision=precision_c, gradient_checkpointing=ckpt_c, micro_batch=micro_c, grad_accum=accum_c, rank=rank,
        alpha=Choice(2 * rank.value, "alpha = 2 × rank (scale 2), the convention of seeds 000, 001 and 004"),
        dropout=dropout, target_modules=targets, learning_rate=Choice(*choose_learning_rate(arch.n_params, n)),
        epochs=Choice(*choose_epochs(n, 1 + copies)),
        early_stopping_patience=Choice(defaults.patience, f"stop after {defaults.patience} val passes without a "
                                       "better val metric, once the learning rate has decayed; the best checkpoint "
                                       "by val metric, never by train loss (seeds 000, 004)"),
        top_layers=Choice(top, top_why), entity_swaps=Choice(copies, swaps_why),
        max_length=max_len, trainable_params=trainable, memory=chosen, fit=fit, options=options, notes=notes,
        truncated_prompts=truncated, skipped_examples=skipped)


# --- serving ------------------------------------------------------------------------------------------------
DEFAULT_QUANTS = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")
N_UBATCH = 512  # llama.cpp's default micro-batch; it sizes the compute buffer
KV_BYTES = {"F32": 4.0, "F16": 2.0, "Q8_0": 34 / 32, "Q4_0": 18 / 32}
# Beyond weights, KV and compute buffer: the process itself. CPU: python + llama_cpp loaded (~70 MiB RSS here).
# GPU: the CUDA context and scratch; not measured by honed — seed 004 budgets "+1 GB" for this and the compute
# buffer together, and the buffer is counted separately here.
SERVE_OVERHEAD = {False: 80 * MIB, True: GIB // 2}


@dataclass(frozen=True)
class ServeMemory:
    """Memory to serve one GGUF rung with llama.cpp, in bytes."""

    quant: str
    bits_per_weight: float
    weights: int
    kv_cache: int
    compute: int
    overhead: int
    fit: str = "unknown"

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


def kv_cache_bytes(arch: ModelArch, n_ctx: int, n_parallel: int = 1, kv_type: str = "F16") -> int:
    """K and V for every layer: 2 × layers × kv_heads × head_dim × cells × bytes (GQA: kv_heads, not heads).

    llama-cpp-python keeps full-size caches for Gemma's sliding-window layers too ("using full-size SWA
    cache"), so every layer counts; checked against llama.cpp's own report in the tests.
    """
    return int(2 * arch.n_layers * arch.kv_dim * n_ctx * n_parallel * KV_BYTES[kv_type])


def compute_buffer_bytes(arch: ModelArch, n_ctx: int, n_parallel: int = 1, flash_attn: bool = False) -> int:
    """llama.cpp's compute buffer for a 512-token micro-batch: the larger of the logits and the attention scores.

    Fitted to llama.cpp's reports (SmolLM2 at 2k/8k context: 99/166 MiB; Gemma 3 at 2k/8k: 515 MiB, where the
    262k-entry vocabulary's logits dominate). The scores buffer is reused across heads and layers; flash
    attention never materializes it.
    """
    logits = N_UBATCH * arch.vocab * 4
    scores = 0 if flash_attn else int(1.1 * N_UBATCH * n_ctx * n_parallel * arch.n_heads * 4)
    return max(logits, scores) + N_UBATCH * 3 * arch.hidden * 4


def plan_serving(arch: ModelArch, quants: Sequence[str] = DEFAULT_QUANTS, *, n_ctx: int = 4096,
                 n_parallel: int = 1, kv_type: str = "F16", on_gpu: bool = False,
                 memory_bytes: int | None = None) -> list[ServeMemory]:
    """Memory to serve each quantization rung: weights as llama.cpp's quantizer lays them out + KV + buffers."""
    if kv_type not in KV_BYTES:
        raise UserError(f"unknown KV cache type {kv_type!r}: expected one of {', '.join(KV_BYTES)}")
    kv = kv_cache_bytes(arch, n_ctx, n_parallel, kv_type)
    compute = compute_buffer_bytes(arch, n_ctx, n_parallel, flash_attn=False)
    rows = []
    for quant in quants:
        try:
            weights = weights_bytes(arch, quant.upper())
        except ValueError as exc:
            raise UserError(str(exc)) from None
        bpw = weights * 8 / arch.n_params
        row = ServeMemory(quant.upper(), bpw, weights, kv, compute, SERVE_OVERHEAD[on_gpu])
        rows.append(ServeMemory(**{**asdict(row), "fit": _fit(row.total, memory_bytes)}))
    return rows

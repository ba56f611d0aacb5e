"""A model's architecture, read without loading its weights: from a GGUF's metadata or an HF `config.json`.

The planner needs shapes, not weights: layers, widths, attention heads (GQA), vocabulary, tied embeddings. From
them `ModelArch` computes the exact parameter count (checked in the tests against the sum of the GGUF's tensor
element counts and against transformers' `num_parameters()`), the per-layer linear shapes that LoRA wraps, and
the KV-cache geometry for serving.

Dense decoder-only models only (llama, mistral, qwen2, qwen3, gemma2, gemma3, smollm…): a mixture-of-experts
model is refused with a clear message rather than planned wrong.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.errors import ModelNotFound, UserError

# The seven projections of a llama-style block, by their PEFT/HF module names, and their GGUF tensor names.
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ATTENTION_MODULES = LORA_MODULES[:4]
GGUF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
              "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}

# Families whose blocks carry four hidden-size norms (pre and post, around attention and MLP) instead of two,
# and families with per-head RMSNorms on q and k. Every other family is taken to be llama-like.
_FOUR_NORMS = {"gemma2", "gemma3", "gemma3_text"}
_QK_NORM = {"gemma3", "gemma3_text", "qwen3", "olmo2"}
# Gemma interleaves sliding-window layers with a global one: every 2nd (Gemma 2) or 6th (Gemma 3) layer is
# global. llama.cpp hard-codes the same pattern; GGUF metadata does not carry it.
_SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "gemma3_text": 6}
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text"}


@dataclass(frozen=True)
class ModelArch:
    """The shapes of a dense decoder-only transformer."""

    name: str
    family: str
    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    context_length: int
    norms_per_layer: int = 2
    """Hidden-size RMSNorm weights per block (llama 2; gemma 2/3: 4)."""
    qk_norm: bool = False
    """Per-head RMSNorm on queries and keys (gemma 3, qwen 3)."""
    bias_modules: tuple[str, ...] = ()
    """Projections that carry a bias (qwen 2: q, k, v)."""
    sliding_window: int | None = None
    swa_layers: int = 0
    """How many layers use sliding-window attention (their KV cache stops growing at the window)."""
    source: str = ""

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each projection in one block, by PEFT module name."""
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        """Weights of all the blocks' projections: what a 4-bit (QLoRA) load quantizes."""
        return self.n_layers * sum(a * b for a, b in self.linear_shapes().values())

    @property
    def embedding_params(self) -> int:
        """Token embeddings plus the output head when it is not tied to them."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def n_params(self) -> int:
        """Exact parameter count (a tied output head counted once, as transformers counts it)."""
        shapes = self.linear_shapes()
        per_layer = sum(a * b for a, b in shapes.values())
        per_layer += sum(shapes[m][1] for m in self.bias_modules)
        per_layer += self.norms_per_layer * self.hidden + (2 * self.head_dim if self.qk_norm else 0)
        return self.embedding_params + self.hidden + self.n_layers * per_layer  # + the final norm

    def lora_params(self, rank: int, targets: tuple[str, ...] | list[str] = LORA_MODULES) -> int:
        """Trainable LoRA parameters: A (r × in) and B (out × r) per targeted projection per layer."""
        shapes = self.linear_shapes()
        return self.n_layers * sum(rank * (shapes[m][0] + shapes[m][1]) for m in targets)


# GGML tensor types: id → (name, elements per block, bytes per block). From ggml.h / gguf-py's constants.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]
    """GGML order: shape[0] is the row length (a linear layer's in_features)."""
    type_name: str
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class GGUFArray:
    """An array value in the metadata, kept as its length only (the tokenizer's 262k strings are skipped)."""

    length: int


@dataclass(frozen=True)
class GGUFHeader:
    metadata: dict[str, Any]
    tensors: list[GGUFTensor]


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf_header(path: Path) -> GGUFHeader:
    """A GGUF's metadata and tensor table, without reading the tensors' data.

    A few dozen lines of `struct` instead of `gguf.GGUFReader`, which materializes every token string and
    takes 10–40 s on a 2-core machine for a 262k-token vocabulary; this skips them in well under a second.
    """
    with path.open("rb") as fh:
        data = fh.read(1 << 20)
        pos = 0

        def take(n: int) -> bytes:
            nonlocal data, pos
            while pos + n > len(data):  # the header is usually < 10 MiB; read on as needed
                more = fh.read(max(n, 1 << 22))
                if not more:
                    raise UserError(f"{path}: truncated GGUF header")
                data = data[pos:] + more
                pos = 0
            chunk = data[pos:pos + n]
            pos += n
            return chunk

        def num(fmt: str) -> Any:
            return struct.unpack("<" + fmt, take(struct.calcsize(fmt)))[0]

        def string() -> str:
            return take(num("Q")).decode("utf-8", errors="replace")

        def value(vtype: int) -> Any:
            if vtype == 8:
                return string()
            if vtype == 9:
                etype, count = num("I"), num("Q")
                if etype == 8:
                    for _ in range(count):
                        take(num("Q"))
                elif etype in _SCALARS:
                    take(struct.calcsize(_SCALARS[etype]) * count)
                else:
                    raise UserError(f"{path}: GGUF arrays of arrays are not supported")
                return GGUFArray(count)
            return num(_SCALARS[vtype])

        if take(4) != b"GGUF":
            raise UserError(f"{path}: not a GGUF file (bad magic)")
        version = num("I")
        if version < 2:
            raise UserError(f"{path}: GGUF version {version} is too old (2 or later is supported)")
        n_tensors, n_kv = num("Q"), num("Q")
        metadata = {}
        for _ in range(n_kv):
            key = string()
            metadata[key] = value(num("I"))
        tensors = []
        for _ in range(n_tensors):
            name = string()
            shape = tuple(num("Q") for _ in range(num("I")))
            type_id = num("I")
            num("Q")  # offset of the data: not needed
            type_name, block, size = GGML_TYPES.get(type_id, (f"type{type_id}", 1, 0))
            n = math.prod(shape)
            tensors.append(GGUFTensor(name, shape, type_name, n, n // block * size))
    return GGUFHeader(metadata, tensors)


def read_gguf_arch(path: Path) -> ModelArch:
    """Architecture from a GGUF's metadata and tensor shapes (the tensors' data is not read)."""
    header = read_gguf_header(path)
    meta = header.metadata
    arch = meta.get("general.architecture")
    if arch is None:
        raise UserError(f"{path}: no general.architecture in the GGUF metadata; is this a model file?")

    def key(name: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{name}", default)

    if key("expert_count"):
        raise UserError(f"{path.name}: mixture-of-experts models ({arch}) are not supported by the planner")
    tensors = {t.name: t.shape for t in header.tensors}
    hidden, heads = int(key("embedding_length")), int(key("attention.head_count"))
    head_dim = int(key("attention.key_length", hidden // heads))
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = key("vocab_size") or (tokens.length if isinstance(tokens, GGUFArray) else
                                  tensors["token_embd.weight"][1])
    # Norms: the 1-D hidden-size tensors of block 0 (attn_norm, ffn_norm, and Gemma's post-norms).
    block0 = {n.removeprefix("blk.0."): s for n, s in tensors.items() if n.startswith("blk.0.")}
    norms = sum(1 for n, s in block0.items() if n.endswith("norm.weight") and s == (hidden,))
    biases = tuple(m for m, g in GGUF_NAMES.items() if f"{g}.bias" in block0)
    n_layers = int(key("block_count"))
    window = key("attention.sliding_window")
    pattern = _SWA_PATTERN.get(arch)
    return ModelArch(
        name=str(meta.get("general.name") or path.stem), family=arch, n_layers=n_layers, hidden=hidden,
        intermediate=int(key("feed_forward_length")), n_heads=heads,
        n_kv_heads=int(key("attention.head_count_kv", heads)), head_dim=head_dim, vocab=int(vocab),
        tied_embeddings="output.weight" not in tensors, context_length=int(key("context_length", 2048)),
        norms_per_layer=norms, qk_norm="attn_q_norm.weight" in block0, bias_modules=biases,
        sliding_window=int(window) if window and pattern else None,
        swa_layers=n_layers - n_layers // pattern if window and pattern else 0, source=str(path))


def gguf_tensor_params(path: Path) -> int:
    """Sum of the element counts of a GGUF's tensors: the real parameter count, read from the file.

    `rope_freqs` (Llama 3.1's RoPE scaling table) is a constant, not a parameter, and is left out, as
    transformers leaves it out.
    """
    return sum(t.n_elements for t in read_gguf_header(path).tensors if not t.name.startswith("rope_freqs"))


def read_hf_arch(folder: Path) -> ModelArch:
    """Architecture from a Hugging Face checkpoint folder's config.json."""
    try:
        cfg: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelNotFound(f"{folder}: no config.json (not a Hugging Face checkpoint folder)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{folder / 'config.json'}: not valid JSON: {exc.msg}") from None
    return arch_from_config(cfg, name=folder.name, source=str(folder))


def arch_from_config(cfg: dict[str, Any], *, name: str = "", source: str = "") -> ModelArch:
    """Architecture from a parsed HF config (multimodal configs: their `text_config`)."""
    top_tied = cfg.get("tie_word_embeddings")
    cfg = cfg.get("text_config", cfg)
    family = str(cfg.get("model_type", "llama"))
    if cfg.get("num_local_experts") or cfg.get("num_experts"):
        raise UserError(f"{name or source}: mixture-of-experts models ({family}) are not supported by the planner")
    missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                           "vocab_size") if k not in cfg]
    if missing:
        raise UserError(f"{source or name}: config.json lacks {', '.join(missing)}; is it a decoder-only LM?")
    hidden, heads, n_layers = int(cfg["hidden_size"]), int(cfg["num_attention_heads"]), int(cfg["num_hidden_layers"])
    tied = cfg.get("tie_word_embeddings", top_tied)
    biases: tuple[str, ...] = ()
    if family == "qwen2":
        biases = ("q_proj", "k_proj", "v_proj")  # Qwen2 always has q/k/v biases, whatever the config says
    elif cfg.get("attention_bias"):
        biases = ATTENTION_MODULES
    if cfg.get("mlp_bias"):
        biases += ("gate_proj", "up_proj", "down_proj")
    layer_types = cfg.get("layer_types") or []
    window = cfg.get("sliding_window")
    if layer_types:
        swa = sum(1 for t in layer_types if t == "sliding_attention")
    elif family in _SWA_PATTERN:
        swa = n_layers - n_layers // _SWA_PATTERN[family]
    else:
        swa = n_layers if window and cfg.get("use_sliding_window") else 0
    return ModelArch(
        name=name or family, family=family, n_layers=n_layers, hidden=hidden,
        intermediate=int(cfg["intermediate_size"]), n_heads=heads,
        n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads), vocab=int(cfg["vocab_size"]),
        tied_embeddings=bool(family in _TIED_BY_DEFAULT if tied is None else tied),
        context_length=int(cfg.get("max_position_embeddings", 2048)),
        norms_per_layer=4 if family in _FOUR_NORMS else 2, qk_norm=family in _QK_NORM, bias_modules=biases,
        sliding_window=int(window) if window and swa else None, swa_layers=swa, source=source)


def read_arch(model: str) -> ModelArch:
    """An HF checkpoint folder, a Hugging Face hub id, a .gguf path or a model alias → its architecture."""
    p = Path(model).expanduser()
    if p.is_dir():
        return read_hf_arch(p)
    from honed.train.loading import hub_snapshot, is_hub_id

    if is_hub_id(model):
        return read_hf_arch(hub_snapshot(model))  # offline: the cached copy, or the error naming HF_HUB_OFFLINE
    from honed.backends.models import resolve_gguf

    return read_gguf_arch(resolve_gguf(model))


"""What llama.cpp's quantizer writes for each tensor of a model, and so how many bytes a GGUF rung weighs.

A "Q4_K_M" file is not 4.5 bits everywhere: llama.cpp keeps norms in F32, gives the output head Q6_K, spends
Q6_K on `attn_v` and `ffn_down` in the first and last eighth of the layers and every third one between, and —
what matters most for the tiny models honed ships — falls back to a 32-wide type (Q5_0, Q5_1, Q8_0) for every
tensor whose rows are not a multiple of 256. SmolLM2 (hidden 576) and Gemma 3 270M (hidden 640) hit that
fallback on most tensors, so their real Q4_K_M weighs ~5.5 bits per weight, not 4.5.

`tensor_types` follows `llama_tensor_get_type` (llama.cpp, src/llama-quant.cpp) for the file types honed's
`quantize` offers, dense models, no importance matrix. The tests check it tensor by tensor against the GGUFs
that honed's PyPI packages carry and against rungs made by `honed.exporting.quantize`.
"""

from __future__ import annotations

from honed.train.arch import GGML_TYPES, GGUF_NAMES, ModelArch

_BLOCK = {name: (block, size) for name, block, size in GGML_TYPES.values()}

# The default tensor type of each llama.cpp file type ("ftype").
FTYPE_BASE = {"F32": "F32", "F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K",
              "Q5_K_S": "Q5_K", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K",
              "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q3_K_M": "Q3_K", "Q3_K_L": "Q3_K", "Q3_K_S": "Q3_K",
              "Q2_K": "Q2_K", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS"}

# A k-quant needs rows that are a multiple of 256; llama.cpp then substitutes a 32-wide type.
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL",
             "IQ4_XS": "IQ4_NL"}


def bits_per_weight(type_name: str) -> float:
    """Storage bits per weight of one GGML tensor type (block scales included): Q4_K 4.5, Q8_0 8.5, F16 16."""
    block, size = _BLOCK[type_name]
    return size * 8 / block


def _use_more_bits(i: int, n: int) -> bool:
    # llama.cpp: the first and last eighth of the layers, and every third layer between, get more bits.
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _choose(ftype: str, role: str, layer: int, arch: ModelArch, row: int) -> str:
    base = FTYPE_BASE[ftype]
    if base in ("F32", "F16", "BF16"):
        return base
    n, gqa = arch.n_layers, arch.n_heads // max(arch.n_kv_heads, 1)
    t = base
    if role == "output":
        # The output head (or the token embedding that doubles as it) is the most sensitive tensor.
        return "Q8_0" if row % 256 else ("Q8_0" if base == "Q8_0" else "Q6_K")
    if role == "attn_v":
        if ftype == "Q2_K":
            t = "Q4_K" if gqa >= 4 else "Q3_K"
        elif ftype == "Q3_K_M":
            t = "Q5_K" if layer < 2 else "Q4_K"
        elif ftype == "Q3_K_L" or (ftype in ("IQ4_NL", "IQ4_XS") and gqa >= 4):
            t = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, n):
            t = "Q6_K"
        elif ftype == "Q4_K_S" and layer < 4:
            t = "Q5_K"
    elif role == "ffn_down":
        if ftype == "Q2_K":
            t = "Q3_K"
        elif ftype == "Q3_K_M":
            t = "Q5_K" if layer < n // 16 else "Q4_K"
        elif ftype == "Q3_K_L":
            t = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, n):
            t = "Q6_K"
        elif ftype in ("IQ4_NL", "IQ4_XS", "Q4_K_S") and layer < n // 8:
            t = "Q5_K"
    elif role == "attn_output":
        t = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(ftype, base)
    if row % _BLOCK[t][0]:
        t = _FALLBACK.get(t, "F16")
        if row % _BLOCK[t][0]:
            t = "F16"
    return t


def tensor_types(arch: ModelArch, ftype: str) -> list[tuple[str, str, int]]:
    """(GGUF tensor name, GGML type, element count) of every tensor a `ftype` file of this model holds."""
    if ftype not in FTYPE_BASE:
        raise ValueError(f"unknown GGUF file type {ftype!r}: expected one of {', '.join(FTYPE_BASE)}")
    out = [("token_embd.weight", _choose(ftype, "output" if arch.tied_embeddings else "token_embd", 0, arch,
                                         arch.hidden), arch.vocab * arch.hidden)]
    if not arch.tied_embeddings:
        out.append(("output.weight", _choose(ftype, "output", 0, arch, arch.hidden), arch.vocab * arch.hidden))
    out.append(("output_norm.weight", "F32", arch.hidden))
    shapes = arch.linear_shapes()
    for layer in range(arch.n_layers):
        for module, gguf_name in GGUF_NAMES.items():
            row, col = shapes[module]
            out.append((f"blk.{layer}.{gguf_name}.weight", _choose(ftype, gguf_name, layer, arch, row), row * col))
            if module in arch.bias_modules:
                out.append((f"blk.{layer}.{gguf_name}.bias", "F32", col))
        out += [(f"blk.{layer}.norm{k}.weight", "F32", arch.hidden) for k in range(arch.norms_per_layer)]
        if arch.qk_norm:
            out += [(f"blk.{layer}.attn_q_norm.weight", "F32", arch.head_dim),
                    (f"blk.{layer}.attn_k_norm.weight", "F32", arch.head_dim)]
    return out


def weights_bytes(arch: ModelArch, ftype: str) -> int:
    """Bytes of tensor data in a `ftype` GGUF of this model (the file adds only its metadata)."""
    total = 0
    for _, type_name, n in tensor_types(arch, ftype):
        block, size = _BLOCK[type_name]
        total += n // block * size
    return total

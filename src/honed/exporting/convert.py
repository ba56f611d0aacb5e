"""HF checkpoint folder → F16 GGUF with llama.cpp's own `convert_hf_to_gguf.py`, offline, in a subprocess.

Where the converter comes from (../shared/DESIGN.md): the llama-cpp-python **sdist** 0.3.36 carries llama.cpp's
`vendor/llama.cpp/convert_hf_to_gguf.py`, its `conversion/` package and its own `gguf-py`. The converter needs
that gguf-py: PyPI `gguf` 0.19.0 (what `pip install "honed[train]"` brings) is too old for it — the version
trap. So honed keeps the three next to each other in `~/.cache/honed/llama.cpp-0.3.36/` and runs the script
with that gguf-py first on the path; the subprocess reports which `gguf` it really imported, and a conversion
that picked up another one is refused.

    python -m honed.exporting.convert fetch     # pre-fetch the converter (scripts/setup does this)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from honed.errors import UserError

LLAMA_CPP_PYTHON = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
"""sha256 of llama_cpp_python-0.3.36.tar.gz: a version pin alone would take any file an index serves under it."""
CONVERTER_SHA256 = "fdbb659d768c135b48dc0a35b7bf30e6ad39225e915f3aa00d1be19f7ba9c61b"
"""`tree_sha256` of the converter kept in the cache (the sdist's converter, conversion/, gguf-py/, LICENSE)."""
SCRIPT = "convert_hf_to_gguf.py"
_KEEP = (SCRIPT, "conversion/", "gguf-py/", "LICENSE")
_MARK = "HONED_GGUF_FROM="


class ConverterMissing(UserError):
    """llama.cpp's converter is neither cached nor fetchable."""


def cache_dir() -> Path:
    return Path.home() / ".cache" / "honed" / f"llama.cpp-{LLAMA_CPP_PYTHON}"


def _complete(folder: Path) -> bool:
    return (folder / SCRIPT).is_file() and (folder / "gguf-py" / "gguf" / "__init__.py").is_file()


def tree_sha256(folder: Path) -> str:
    """One sha256 over every file under `folder` (path and content; Python's bytecode caches left out)."""
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            digest.update(f"{p.relative_to(folder).as_posix()}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
                          .encode())
    return digest.hexdigest()


def _check_cached(folder: Path) -> Path:
    """The cached converter, refused when its files differ from the ones the pinned sdist carries: the
    converter is code honed runs."""
    got = tree_sha256(folder)
    if got != CONVERTER_SHA256:
        raise ConverterMissing(f"{folder}: the cached converter's files hash to {got[:12]}… but the llama-cpp-python"
                               f"=={LLAMA_CPP_PYTHON} sdist's are pinned to {CONVERTER_SHA256[:12]}…; it was changed "
                               "after fetching: delete the folder and run `python -m honed.exporting.convert fetch`")
    return folder / SCRIPT


def ensure_converter(*, fetch: bool = True) -> Path:
    """The path of `convert_hf_to_gguf.py` (with its gguf-py beside it): `$HONED_CONVERTER` (the script or its
    folder), else the cache, else fetched from PyPI's sdist into the cache."""
    env = os.environ.get("HONED_CONVERTER")
    if env:
        p = Path(env).expanduser()
        folder = p if p.is_dir() else p.parent
        if not _complete(folder):
            raise ConverterMissing(f"HONED_CONVERTER={env}: expected {SCRIPT} with a gguf-py/ folder beside it "
                                   f"(llama.cpp's source tree, or the sdist of llama-cpp-python=={LLAMA_CPP_PYTHON} "
                                   "under vendor/llama.cpp)")
        return folder / SCRIPT
    folder = cache_dir()
    if _complete(folder):
        return _check_cached(folder)
    if not fetch:
        raise ConverterMissing(f"llama.cpp's converter is not in {folder}: run `python -m honed.exporting.convert "
                               "fetch` (needs PyPI once), or set HONED_CONVERTER to a convert_hf_to_gguf.py")
    return fetch_converter()


def fetch_converter() -> Path:
    """Download the llama-cpp-python sdist (pip's cache usually has it) and keep only the converter, its
    `conversion/` package and its gguf-py, atomically: a half-extracted cache is never visible."""
    folder = cache_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
               f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConverterMissing(f"could not fetch llama.cpp's converter ({exc}); set HONED_CONVERTER to a "
                                   "convert_hf_to_gguf.py from llama.cpp's source") from None
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no sdist downloaded"]
            raise ConverterMissing(
                f"llama.cpp's converter is not cached in {folder} and the llama-cpp-python=={LLAMA_CPP_PYTHON} "
                f"sdist could not be downloaded ({why[0]}); offline, copy that sdist's vendor/llama.cpp "
                f"({SCRIPT}, conversion/, gguf-py/) there, or set HONED_CONVERTER")
        got = hashlib.sha256(sdists[0].read_bytes()).hexdigest()
        if got != SDIST_SHA256:
            raise ConverterMissing(f"{sdists[0].name}: sha256 {got[:12]}… but llama-cpp-python=={LLAMA_CPP_PYTHON} is "
                                   f"pinned to {SDIST_SHA256[:12]}…; the index served another file under that "
                                   "version: refusing to run its converter")
        stage = Path(tmp) / "converter"
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
        with tarfile.open(sdists[0]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)
                       and m.name[len(prefix):].startswith(_KEEP) and (m.isfile() or m.isdir())]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(stage, members=members, filter="data")
        if not _complete(stage):
            raise ConverterMissing(f"{sdists[0].name} has no vendor/llama.cpp/{SCRIPT} with gguf-py")
        if folder.exists():  # another process won the race, or a stale incomplete copy
            shutil.rmtree(folder, ignore_errors=True)
        stage.replace(folder)
    return folder / SCRIPT


@dataclass(frozen=True)
class Converted:
    path: Path
    seconds: float
    gguf_py: str
    """The `gguf` package the converter really imported."""
    converter: str


# Runs in the subprocess: put the converter's own gguf-py first, say which gguf got imported, run the script.
_BOOT = f"""
import runpy, sys
script, gguf_py = sys.argv[1], sys.argv[2]
sys.path[:0] = [str(__import__('pathlib').Path(script).parent), gguf_py]
import gguf
print({_MARK!r} + gguf.__file__, file=sys.stderr, flush=True)
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""


def convert_to_gguf(hf_dir: Path, out: Path, *, outtype: str = "f16", timeout_s: float = 1800) -> Converted:
    """Run llama.cpp's converter on `hf_dir`, writing `out` atomically (a killed run leaves no partial GGUF)."""
    script = ensure_converter()
    gguf_py = script.parent / "gguf-py"
    tmp = out.with_name(f".{out.name}.tmp")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_LOCAL_GGUF": "1",
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    env.pop("PYTHONPATH", None)  # a user's PYTHONPATH could shadow the converter's gguf-py
    cmd = [sys.executable, "-c", _BOOT, str(script), str(gguf_py), str(hf_dir), "--outfile", str(tmp),
           "--outtype", outtype]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise UserError(f"llama.cpp's converter took more than {timeout_s:.0f} s on {hf_dir}") from None
    lines = proc.stderr.splitlines()
    used = next((ln[len(_MARK):] for ln in lines if ln.startswith(_MARK)), "")
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        tail = "\n".join(lines[-6:])
        raise UserError(f"llama.cpp's converter failed on {hf_dir} (exit {proc.returncode}):\n{tail}")
    if not Path(used).resolve().is_relative_to(gguf_py.resolve()):
        tmp.unlink(missing_ok=True)
        raise UserError(f"the converter imported gguf from {used}, not from its own {gguf_py}: a mismatched gguf "
                        "writes files llama.cpp misreads; remove the other gguf from the path")
    tmp.replace(out)
    return Converted(out, time.perf_counter() - t0, used, str(script))


def _main(argv: list[str]) -> int:
    if argv[:1] != ["fetch"]:
        print("usage: python -m honed.exporting.convert fetch", file=sys.stderr)
        return 2
    try:
        print(ensure_converter())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))

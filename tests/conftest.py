"""Shared fixtures: an isolated HONED_HOME per test, small task folders written on the fly, the `honed` CLI as a
subprocess, the tiny random model (tests/tiny_model.py) built once per run, and the tiers.

Tiers (pyproject's markers; every test carries exactly one, checked at collection):
`unit` no model; `integration` the tiny model through the real engines (transformers, PEFT, llama.cpp, the
converter, a real server); `slow` the real SmolLM2 where only a real model shows the effect; `gpu` CUDA paths,
skipped without CUDA.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch / llama_cpp load: see honed.cli


def _pin_xdist_worker() -> None:
    """Under pytest-xdist (pyproject's `-n auto`), worker i of n runs on every n-th CPU of this process, and so do
    the `honed` processes and servers it starts (affinity is inherited): torch and llama.cpp size their threads
    from it (`honed.backends.base.usable_cpus`), so two workers on 2 cores never run 4 spinning threads."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and count.isdigit() and hasattr(os, "sched_setaffinity")):
        return
    cpus, n, i = sorted(os.sched_getaffinity(0)), int(count), int(worker[2:])
    if n > 1 and len(cpus) >= n:
        os.sched_setaffinity(0, cpus[i % n::n])


_pin_xdist_worker()  # before torch is imported anywhere in this worker: its thread pool is sized once

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TIERS = ("unit", "integration", "slow", "gpu")


@pytest.hookimpl(trylast=True)  # after `-m` deselected: `pytest -m unit` never imports torch here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries exactly one tier; `gpu` tests are skipped where CUDA is not available."""
    wrong = []
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid}: {tiers or 'no tier'}")
    if wrong:
        raise pytest.UsageError("every test needs exactly one tier marker of " + ", ".join(TIERS) + ":\n"
                                + "\n".join(wrong))
    # the one long test first: under xdist it runs on one worker while the other takes the rest of the suite
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if any(item.get_closest_marker("gpu") for item in items) and not _cuda():
        skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def honed_cli(*args: str, home: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m honed ARGS` as a user runs it (a subprocess; wide columns so Rich does not wrap lines)."""
    full = {**os.environ, "COLUMNS": "250", **({"HONED_HOME": str(home)} if home else {}), **(env or {})}
    return subprocess.run([sys.executable, "-m", "honed", *args], capture_output=True, text=True, env=full,
                          timeout=timeout, cwd=cwd, check=False)


def require_models(*aliases: str) -> None:
    """Skip the test unless every model alias resolves to an installed GGUF (the reason names the package)."""
    from honed.backends.models import resolve_gguf
    from honed.errors import ModelNotFound

    for alias in aliases:
        try:
            resolve_gguf(alias)
        except ModelNotFound as exc:
            pytest.skip(str(exc))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A `honed serve` subprocess: its base URL, process, request log, HONED_HOME and --task folder."""
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    home: Path
    task_dir: Path


def start_serve(root: Path, *args: str, env: dict[str, str] | None = None, task: Path | bool = True) -> Served:
    """`honed serve ARGS` in a subprocess on a free loopback port, with `--task`: a copy of the classify example
    (`task=True`), the given task folder, or none (`task=False`); returns once /health answers."""
    import httpx

    root.mkdir(parents=True, exist_ok=True)
    task_dir = task if isinstance(task, Path) else root / "task"
    if task is True and not task_dir.exists():
        shutil.copytree(EXAMPLES / "classify", task_dir)
    port, log, home = free_port(), root / "requests.jsonl", root / "home"
    cmd = [sys.executable, "-m", "honed", "serve", *args, *(["--task", str(task_dir)] if task else []), "--port",
           str(port), "--log", str(log), "--threads", "2"]
    out = (root / "server.out").open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=out,
                            env={**os.environ, "HONED_HOME": str(home), "OMP_WAIT_POLICY": "PASSIVE", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"honed serve exited with {proc.returncode}:\n{(root / 'server.out').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return Served(url, proc, log, home, task_dir)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"honed serve did not answer within 120 s:\n{(root / 'server.out').read_text()[-3000:]}")


def stop_serve(s: Served) -> None:
    if s.proc.poll() is None:
        s.proc.send_signal(signal.SIGINT)
        try:
            s.proc.wait(20)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()


@dataclass
class LlamaServer:
    """A `python -m llama_cpp.server` subprocess: its OpenAI-compatible base URL (ending in /v1), process, log."""
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_llama_server(gguf: Path, log: Path, api_key: str | None = None) -> LlamaServer:
    """llama.cpp's own OpenAI-compatible server on GGUF, on a free loopback port; returns once /v1/models answers."""
    import httpx

    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"llama_cpp.server cannot import ({exc}); run: pip install 'llama-cpp-python[server]'")
    port = free_port()
    # One thread for generation and for the prompt, threads that sleep when idle: on a shared 2-core machine
    # OpenMP threads otherwise spin-wait whenever another process takes a core (10-20x slower).
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd + (["--api_key", api_key] if api_key else []), stdout=fh, stderr=fh,
                                env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            if httpx.get(f"{url}/models", headers=headers, timeout=2).status_code == 200:
                return LlamaServer(url, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"llama_cpp.server did not answer within 90 s:\n{log.read_text()[-2000:]}")


def stop_llama_server(server: LlamaServer) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(autouse=True)
def honed_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "honed-home"
    monkeypatch.setenv("HONED_HOME", str(home))
    return home


def write_task(root: Path, toml: str, splits: dict[str, list[dict]] | None = None) -> Path:
    """A task folder with honed.toml and JSONL splits."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "honed.toml").write_text(toml)
    for split, rows in (splits or {}).items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


CLASSIFY_TOML = """
name = "mini"
kind = "classify"
[data]
test = "test.jsonl"
[prompt]
system = "You sort messages."
template = "Message: {{ text }}\\nAnswer with one of: {{ labels | join(', ') }}, or {{ none_label }}."
[classify]
labels = ["billing", "shipping"]
none_label = "NONE"
"""

CLASSIFY_ROWS = [
    {"id": "a", "text": "I was charged twice", "expected": "billing"},
    {"id": "b", "text": "Where is my parcel?", "expected": "shipping"},
    {"id": "c", "text": "What is the weather?", "expected": "NONE"},
    {"id": "d", "text": "Refund my payment", "expected": "billing"},
]


def write_plan_task(root: Path) -> Path:
    """The mini task with a train split of 20 items (the rows five times, fresh ids): what `honed plan` sizes."""
    toml = CLASSIFY_TOML.replace('test = "test.jsonl"', 'test = "test.jsonl"\ntrain = "train.jsonl"')
    train = [{**row, "id": f"{row['id']}{k}"} for k in range(5) for row in CLASSIFY_ROWS]
    return write_task(root, toml, {"test": CLASSIFY_ROWS, "train": train})


@pytest.fixture
def mini_task(tmp_path: Path) -> Path:
    return write_task(tmp_path / "mini", CLASSIFY_TOML, {"test": CLASSIFY_ROWS})


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny random SmolLM2-shaped model (tests/tiny_model.py): `.hf` folder and `.gguf` (F16), built once."""
    pytest.importorskip("transformers", reason="building the tiny model needs honed[train]")
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def planted_task(tmp_path: Path) -> Path:
    """A fresh copy of the planted task (tests/tiny_model.py) that the tiny model learns."""
    from tests.tiny_model import write_planted_task

    return write_planted_task(tmp_path / "planted")


TINY_TUNE = {"max_steps": 500, "eval_every": 125, "learning_rate": 3e-3, "rank": 16, "alpha": 32, "batch_size": 8,
             "top_layers": 2, "replay_fraction": 0.0, "max_val_items": 16, "force": True}
"""A tune of the tiny model that learns the planted task (~1 minute; val macro-F1 0 → ~0.9): both layers adapted
(on a CPU the planner adapts the upper half: one layer of two), force since 160 examples trip the guard."""


@pytest.fixture(scope="session")
def tiny_tuned(tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One finished tune run of the tiny model on the planted task, in its own HONED_HOME: tests copy the run
    folder before writing into it (gate.json, package/)."""
    from honed.task.spec import load_task
    from honed.train.config import TuneConfig
    from honed.train.sft import tune
    from tests.tiny_model import write_planted_task

    base = tmp_path_factory.mktemp("tiny-tuned")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HONED_HOME", str(base / "home"))  # session scope: the autouse per-test home comes too late
        task_dir = write_planted_task(base / "task")
        summary = tune(load_task(task_dir), TuneConfig(model=str(tiny_model.hf), **TINY_TUNE))
    yield {"summary": summary, "run": Path(summary.run_dir), "task_dir": task_dir, "home": base / "home"}

"""`honed serve PACKAGE`: a delivery package built by hand from the contract in `honed.exporting.package` (the tiny
model's F16 GGUF, tests/tiny_model.py, hard-linked as the only rung: the task's answers are constrained, so valid
whatever the weights); and the refusals that must come before any port opens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from honed.backends.models import file_sha256
from honed.exporting.package import Acceptance, Anchor, Manifest, Rung, write_anchors, write_manifest
from tests.conftest import EXAMPLES
from tests.conftest import start_serve as start
from tests.conftest import stop_serve as stop

pytestmark = pytest.mark.integration
TASK = "support-triage"
RUNG = f"{TASK}-tiny-smollm2-v1-F16"


def _package(root: Path, model: Path) -> Path:
    (root / "task" / "data").mkdir(parents=True)
    shutil.copy(EXAMPLES / "classify" / "honed.toml", root / "task" / "honed.toml")
    shutil.copy(EXAMPLES / "classify" / "data" / "test.jsonl", root / "task" / "data" / "test.jsonl")
    gguf = root / f"{RUNG}.gguf"
    try:
        os.link(model, gguf)  # never written to: the package only reads it
    except OSError:
        shutil.copy(model, gguf)
    write_anchors(root, [Anchor("a1", {"text": "I was charged twice"}, "billing", "billing")])
    write_manifest(root, Manifest(task=TASK, kind="classify", version="v1",
                                  base_model={"name": "tiny-smollm2", "sha256": file_sha256(model)},
                                  rungs=[Rung(quant="F16", file=gguf.name)], recommended="F16",
                                  acceptance=Acceptance(primary_metric="accuracy", min_value=0.5)))
    return root


def _serve_fails(*args: str, home: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "honed", "serve", *args, "--port", "9"], capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "HONED_HOME": str(home),
                                                                    "HONED_API_KEYS": "", "COLUMNS": "300"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


def test_serve_a_package(tmp_path: Path, tiny_model: Any) -> None:
    pkg = _package(tmp_path / "pkg", tiny_model.gguf)
    s = start(tmp_path / "run", str(pkg), task=False)
    try:
        models = [m["id"] for m in httpx.get(f"{s.url}/v1/models", timeout=10).json()["data"]]
        assert models == [RUNG, f"task:{TASK}"]
        r = httpx.post(f"{s.url}/v1/tasks/{TASK}", json={"input": {"text": "Where is my parcel?"}}, timeout=120)
        body = r.json()
        assert r.status_code == 200 and body["layer"] == "primary" and body["valid"] is True
        assert body["model_sha256"] == json.loads((pkg / "manifest.json").read_text())["files"][f"{RUNG}.gguf"]
    finally:
        stop(s)
    # The package's own task is served; --task would add more, but not a second task with the same name.
    msg = _serve_fails(str(pkg), "--task", str(pkg / "task"), home=tmp_path / "home")
    assert f"two tasks are named '{TASK}'" in msg


def test_refusals_before_the_port_opens(tmp_path: Path, tiny_model: Any) -> None:
    pkg = _package(tmp_path / "pkg", tiny_model.gguf)
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["files"][f"{RUNG}.gguf"] = "0" * 64
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    home = tmp_path / "home"
    assert "but the package manifest says 000000000000" in _serve_fails(str(pkg), home=home)
    assert "refusing to bind 0.0.0.0" in _serve_fails("smollm2-135m", "--host", "0.0.0.0", home=home)
    assert "not a honed package" in _serve_fails(str(tmp_path), home=home)
    assert "no Q8_0 rung" in _serve_fails(str(pkg), "--quant", "Q8_0", home=home)
    assert "expected openai:URL#model" in _serve_fails("openai:http://127.0.0.1:9/v1", home=home)

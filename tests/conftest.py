"""Shared fixtures: an isolated HONED_HOME per test, small task folders written on the fly."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch / llama_cpp load: see honed.cli

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


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


@pytest.fixture
def mini_task(tmp_path: Path) -> Path:
    return write_task(tmp_path / "mini", CLASSIFY_TOML, {"test": CLASSIFY_ROWS})

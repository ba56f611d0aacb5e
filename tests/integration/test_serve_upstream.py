"""A fallback layer over HTTP: `--fallback openai:URL#model`, where the OpenAI-compatible server is a second
real `honed serve`. The escalated request crosses the wire, through honed's openai backend (JSON-schema-wrapped
choice, SSE stream with usage) and is logged on both servers. Both serve the tiny model's F16 GGUF
(tests/tiny_model.py): the wire, the constraint and the logs are mechanics, and constrained answers are labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from honed.data.logs import read_log
from tests.conftest import start_serve as start
from tests.conftest import stop_serve as stop

pytestmark = pytest.mark.integration
TASK = "support-triage"
LABELS = ("billing", "bug_report", "feature_request", "account_access", "shipping", "NONE")
MESSAGE = "Please add a dark mode to the recipe viewer"


def test_fallback_to_an_openai_compatible_server(tmp_path: Path, tiny_model: Any) -> None:
    other = tmp_path / "upstream-tiny.F16.gguf"  # a file of its own: the front names its two models apart
    shutil.copyfile(tiny_model.gguf, other)
    upstream = start(tmp_path / "upstream", str(other), task=False)
    try:
        (served,) = [m["id"] for m in httpx.get(f"{upstream.url}/v1/models", timeout=10).json()["data"]]
        front = start(tmp_path / "front", str(tiny_model.gguf), "--fallback",
                      f"openai:{upstream.url}/v1#{served}", "--margin", "1.01")
        try:
            models = httpx.get(f"{front.url}/v1/models", timeout=10).json()["data"]
            assert models[1]["id"] == served and models[1]["honed"]["upstream"] == f"{upstream.url}/v1"
            body = httpx.post(f"{front.url}/v1/tasks/{TASK}", json={"input": {"text": MESSAGE}},
                              timeout=300).json()
            assert body["layer"] == "fallback" and body["valid"] is True and body["answer"] in LABELS
            assert body["model_sha256"] is None  # a remote model's file is not visible from here
            assert body["signals"]["fallback_constrained"] is True and body["signals"]["reason"] == "low_margin"
        finally:
            stop(front)
    finally:
        stop(upstream)
    (front_rec,) = [r for _, r in read_log(front.log)]
    (up_rec,) = [r for _, r in read_log(upstream.log)]
    assert front_rec.layer == "fallback" and front_rec.answer == body["answer"]
    # The upstream saw the same task prompt as a chat request and answered the choice wrapped in JSON.
    assert up_rec.task == "chat" and up_rec.layer == "primary" and MESSAGE in up_rec.input["messages"][-1][
        "content"]
    assert json.loads(up_rec.output) == {"answer": body["answer"]}
    assert len(up_rec.model_sha256 or "") == 64

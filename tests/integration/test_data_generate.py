"""generate → filter with the real embedded model (SmolLM2-135M) as teacher, on small seeded runs.

The tiny teacher writes poor examples, so the real filters reject most of them; the tests assert what holds
for any teacher (each stage passes on at most what it received, the kept items pass every filter again, the
run folder records every candidate's fate, a re-run is answered from the cache), not invented counts.
SmolLM2, not the tiny random model: a random teacher's candidates all fall at the first filter, and the later
stages (consistency of k answers, grounding in the source) would never see one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from honed.backends import open_backend
from honed.data.filters import ungrounded_values
from honed.data.generate import GenerateConfig, GenerateResult, filter_file, generate
from honed.task import load_items, load_task
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration

BOOKING_TOML = """
name = "booking"
kind = "extract"
description = "Extract the party size and the time from a restaurant booking message."

[prompt]
template = '''
Extract the booking details from the message as JSON with the keys "people" and "time", copying each value \
exactly as written in the message.

Message: {{ text }}

Answer with only the JSON object.'''

[extract]
schema = { type = "object", properties = { people = { type = "string", minLength = 1 }, time = { type = \
"string", minLength = 1 } }, required = ["people", "time"], additionalProperties = false }

[generation]
max_tokens = 40
"""

MESSAGES = """Hi, could I book a table for 4 at 7pm tonight?

We are 2 people and would like to come at 8:30.

A table for six at 19:00 please, it's for a birthday.

Can we get a table for 3 at noon on Sunday?
"""


@pytest.fixture(scope="module")
def teacher():  # type: ignore[no-untyped-def]
    with open_backend("llamacpp", "smollm2-135m") as be:
        yield be


def _check_survival(result: GenerateResult, n: int) -> None:
    s = result.survival
    assert s.generated == n == len(result.candidates)
    previous = s.generated
    for stage in s.stages:
        assert stage.n_in == previous and 0 <= stage.n_out <= stage.n_in, stage
        assert sum(stage.reasons.values()) == stage.n_in - stage.n_out
        previous = stage.n_out
    recovered = s.repair["recovered"] if s.repair else 0
    assert s.kept == previous + recovered == len(result.kept)
    fates = [c for c in result.candidates if c.rejected_at is None]
    assert len(fates) == s.kept and all(c.reason is None for c in fates)
    assert all(c.reason for c in result.candidates if c.rejected_at is not None)


def test_generate_from_seeds_then_filter(teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "triage"
    shutil.copytree(EXAMPLES / "classify", folder)
    task = load_task(folder)
    seeds = load_items(task, "train")[:6]
    cfg = GenerateConfig(n=5, k=3, min_agree=2, constrained=True, repair=True, seed=0)
    result = generate(task, teacher, seeds=seeds, config=cfg, out=tmp_path / "kept.jsonl")
    _check_survival(result, 5)
    names = [st.name for st in result.survival.stages]
    assert names == ["input_valid", "near_duplicate", "schema", "consistency", "grounding"]
    labelled = [c for c in result.candidates if c.answers]
    assert all(len(c.answers) == 3 for c in labelled)  # k answers, through the task's own prompt and parser
    for c in result.candidates:
        if c.rejected_at is None:
            assert sum(a == c.expected for a in c.answers) >= 2 and c.expected in task.labels

    # the kept items pass every filter again, against the task's current data
    again, survival, _ = filter_file(task, tmp_path / "kept.jsonl")
    assert len(again) == len(result.kept) == survival.kept

    run = result.run_dir
    assert run is not None
    assert {
        "config.json",
        "candidates.jsonl",
        "kept.jsonl",
        "survival.json",
        "survival.md",
        "manifest.json",
    } <= {p.name for p in run.iterdir()}
    assert len((run / "candidates.jsonl").read_text().splitlines()) == 5
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["teacher"]["sha256"]) == 64 and manifest["requests"]["asked"] > 0
    assert json.loads((run / "survival.json").read_text())["kept"] == result.survival.kept

    # seeded and cached: the same run again asks the teacher nothing and keeps the same items
    second = generate(task, teacher, seeds=seeds, config=cfg)
    assert second.survival.to_json() == result.survival.to_json()
    assert [(i.inputs, i.expected) for i in second.kept] == [(i.inputs, i.expected) for i in result.kept]
    assert json.loads((second.run_dir / "manifest.json").read_text())["requests"]["asked"] == 0


def test_generate_from_documents_is_grounded(teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "booking"
    folder.mkdir()
    (folder / "honed.toml").write_text(BOOKING_TOML)
    (folder / "messages.txt").write_text(MESSAGES)
    task = load_task(folder)
    cfg = GenerateConfig(n=4, k=2, min_agree=1, constrained=True, verbatim=True, repair=True, seed=0)
    result = generate(task, teacher, documents=[folder / "messages.txt"], config=cfg)
    _check_survival(result, 4)
    paragraphs = [p.strip() for p in MESSAGES.split("\n\n")]
    assert [c.inputs["text"] for c in result.candidates] == paragraphs  # verbatim: the chunks are the inputs
    grounding = result.survival.stages[-1]
    assert grounding.name == "grounding" and set(grounding.reasons) <= {"not in source"}
    for c in result.candidates:
        if c.rejected_at is None:
            assert ungrounded_values(task, c.expected, c.source) == []  # every value is in its message
        elif c.rejected_at == "grounding":
            assert c.reason.startswith("not in source")

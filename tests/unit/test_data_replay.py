"""Replay mix: honed's own general set is valid and varied; the mix size and sampling are right."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from honed.data.replay import load_replay, mix_replay, replay_count
from honed.errors import DataError

pytestmark = pytest.mark.unit


def test_shipped_set_is_valid_varied_and_unique() -> None:
    examples = load_replay()
    assert 150 <= len(examples) <= 300
    cats = Counter(e.category for e in examples)
    assert (
        set(cats) == {"arithmetic", "definition", "rewriting", "fact", "formatting"}
        and min(cats.values()) >= 25
    )
    assert len({e.id for e in examples}) == len(examples)
    assert len({e.prompt for e in examples}) == len(examples)
    assert all(e.response.strip() and len(e.prompt) < 300 for e in examples)


def test_arithmetic_answers_are_right() -> None:
    import re

    ops = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "×": lambda a, b: a * b,
        "÷": lambda a, b: a // b,
    }
    checked = 0
    for e in load_replay():
        m = re.fullmatch(r"What is (\d+) ([-+×÷]) (\d+)\?", e.prompt)
        if m:
            assert int(e.response) == ops[m.group(2)](int(m.group(1)), int(m.group(3))), e
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [(500, 0.03, 15), (1000, 0.05, 53), (100, 0.02, 2), (10, 0.0, 0), (0, 0.03, 0)],
)
def test_replay_count(n: int, fraction: float, expected: int) -> None:
    assert replay_count(n, fraction) == expected
    if n and fraction:
        assert expected / (n + expected) == pytest.approx(fraction, abs=0.005)


def test_mix_is_seeded_and_spread_over_categories() -> None:
    a, b = mix_replay(500, 0.03, seed=1), mix_replay(500, 0.03, seed=1)
    assert a == b and a != mix_replay(500, 0.03, seed=2)
    assert len(a) == 15 and len({e.id for e in a}) == 15
    assert set(Counter(e.category for e in a)) == {
        "arithmetic",
        "definition",
        "rewriting",
        "fact",
        "formatting",
    }
    assert a[0].messages()[0].role == "user"
    with pytest.raises(DataError, match="replay set has 220"):
        mix_replay(10_000, 0.05)
    with pytest.raises(DataError, match="must be in"):
        replay_count(10, 0.7)


def test_user_file(tmp_path: Path) -> None:
    f = tmp_path / "mine.jsonl"
    f.write_text(
        json.dumps({"prompt": "Say hi", "response": "hi"}) + "\n" + json.dumps({"prompt": "x"}) + "\n"
    )
    with pytest.raises(DataError, match=f"{f}:2: field 'response' must be a non-empty string"):
        load_replay(f)
    f.write_text(json.dumps({"prompt": "Say hi", "response": "hi"}) + "\n")
    assert [e.id for e in mix_replay(30, 0.03, path=f)] == ["replay-0001"]
    with pytest.raises(DataError, match="replay file not found"):
        load_replay(tmp_path / "nope.jsonl")

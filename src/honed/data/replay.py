"""Replay mix: a few general instruction examples added to a fine-tune, so the model does not forget how to be
a
language model (seed 000's "What is 2+2?" → "EVEN."; seed 004 recommends 2–5%).

honed ships `resources/general_replay.jsonl`, ~220 short pairs it wrote itself (arithmetic, definitions,
rewriting, simple facts, formatting): no hub download. A user file in the same format replaces it:
one JSON object per line with "prompt" and "response" (and optionally "id", "category").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from honed.errors import DataError
from honed.jsonl import json_object
from honed.types import Message

DEFAULT_FRACTION = 0.03
RECOMMENDED = (0.02, 0.05)


@dataclass(frozen=True)
class ReplayExample:
    """A general instruction and its answer, trained as one user turn and one assistant turn."""

    id: str
    prompt: str
    response: str
    category: str = ""

    def messages(self) -> tuple[Message, ...]:
        return (Message("user", self.prompt),)


def _parse(lines: list[str], where: str) -> list[ReplayExample]:
    out: list[ReplayExample] = []
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        at = f"{where}:{lineno}"
        obj = json_object(raw, at, 'each line must be an object with "prompt" and "response"')
        for key in ("prompt", "response"):
            if not isinstance(obj.get(key), str) or not obj[key].strip():
                raise DataError(f"{at}: field {key!r} must be a non-empty string")
        out.append(
            ReplayExample(
                str(obj.get("id", f"replay-{lineno:04d}")),
                obj["prompt"],
                obj["response"],
                str(obj.get("category", "")),
            )
        )
    if not out:
        raise DataError(f"{where}: no replay examples (the file is empty)")
    return out


def load_replay(path: Path | None = None) -> list[ReplayExample]:
    """The user's replay file, or honed's own general set."""
    if path is not None:
        if not Path(path).is_file():
            raise DataError(f"{path}: replay file not found")
        return _parse(Path(path).read_text(encoding="utf-8").splitlines(), str(path))
    text = resources.files("honed").joinpath("resources/general_replay.jsonl").read_text(encoding="utf-8")
    return _parse(text.splitlines(), "honed/resources/general_replay.jsonl")


def replay_count(n_task: int, fraction: float = DEFAULT_FRACTION) -> int:
    """Replay examples to add to `n_task` task examples to make up `fraction` of the mix (at least 1)."""
    if not 0.0 <= fraction < 0.5:
        raise DataError(f"replay fraction {fraction} must be in [0, 0.5); seed 004 recommends 0.02-0.05")
    return max(1, round(fraction * n_task / (1.0 - fraction))) if n_task and fraction else 0


def mix_replay(
    n_task: int, fraction: float = DEFAULT_FRACTION, *, seed: int = 0, path: Path | None = None
) -> list[ReplayExample]:
    """A seeded sample of replay examples for a training set of `n_task` items, spread over categories."""
    pool = load_replay(path)
    n = replay_count(n_task, fraction)
    if n > len(pool):
        raise DataError(
            f"{n} replay examples needed ({fraction:.0%} of {n_task}) but the replay set has "
            f"{len(pool)}; lower the fraction or give a larger file"
        )
    rng = random.Random(seed)
    by_cat: dict[str, list[ReplayExample]] = {}
    for ex in pool:
        by_cat.setdefault(ex.category, []).append(ex)
    for exs in by_cat.values():
        rng.shuffle(exs)
    # round-robin over categories: a small sample still covers arithmetic, rewriting, facts, formatting
    picked: list[ReplayExample] = []
    cats = sorted(by_cat)
    while len(picked) < n:
        for c in cats:
            if by_cat[c] and len(picked) < n:
                picked.append(by_cat[c].pop())
    return picked

"""Markdown of the package documents: one way to write a number, a CI, a table, a code block, a cut line."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    """How every number is written in the documents (tests compare against this, not against a retyping)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(ci: Any, digits: int = 3) -> str:
    if not ci or len(ci) != 2:
        return "n/a"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fence(text: str, lang: str = "") -> str:
    """A fenced code block that survives backticks inside the text."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text}\n{ticks}"


def cut(text: str, limit: int = 200) -> str:
    """One line, at most `limit` characters: for answers inside a Markdown line."""
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[:limit] + "…"

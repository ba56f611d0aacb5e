"""Markdown of the package documents: a table, a code block, a cut line (numbers: `honed.display.fmt`)."""

from __future__ import annotations

from typing import Any


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

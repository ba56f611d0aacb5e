"""Markdown helpers of the package documents: one way to write a number, a CI, a table, a code block."""

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


def rung_value(rung: Any, key: str) -> Any:
    """A rung's measurement, whether export put it in `metrics` or beside them."""
    if key in rung.metrics:
        return rung.metrics[key]
    return (rung.model_extra or {}).get(key)


def fence(text: str, lang: str = "") -> str:
    """A fenced code block that survives backticks inside the text."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text}\n{ticks}"


def recommended_rung(manifest: Any) -> Any:
    """The manifest's recommended rung (a clear error when `recommended` names no rung)."""
    for rung in manifest.rungs:
        if rung.quant.upper() == manifest.recommended.upper():
            return rung
    from honed.errors import UserError

    raise UserError(f"manifest: recommended = {manifest.recommended!r} but the rungs are "
                    f"{', '.join(r.quant for r in manifest.rungs) or 'none'}")

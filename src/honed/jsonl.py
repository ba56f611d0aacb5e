"""One JSONL line → one JSON object, or an error that names the file, the line and what was expected."""

from __future__ import annotations

import json
from typing import Any

from honed.errors import DataError


def json_object(raw: str, where: str, what: str = "each line must be one JSON object") -> dict[str, Any]:
    """Parse one line (`where` is "file:line"); a DataError says what is wrong and what was expected."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); {what}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}; {what}")
    return obj

"""One JSON text → one value, or an error that names the file, the line and what was expected.

`json.loads` alone lets three inputs escape as tracebacks: an integer longer than Python converts (4300 digits,
ValueError), nesting deeper than the parser recurses (RecursionError), and, below that, nesting deep enough to
break the recursive code that later walks the value (scorers, schema checks). All three are DataErrors here.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from honed.errors import DataError

MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects accepted in one value. Task items are a few levels deep; the limit
keeps every later recursive walk of a value (flattening, schema checks, hashing) far from Python's stack limit."""


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:  # iterative: a recursive walk would hit the very limit it guards against
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def json_value(raw: str, where: str, what: str) -> Any:
    """Parse one JSON text (`where` is "file:line", or "file:line: field 'x'"); a DataError says what is wrong."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); {what}") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep; {what}") from None
    except ValueError as exc:  # int('1' * 5000): Python refuses to convert integers that long
        if "integer string conversion" not in str(exc):
            raise DataError(f"{where}: not valid JSON ({exc}); {what}") from None
        raise DataError(f"{where}: an integer longer than {sys.get_int_max_str_digits()} digits, more than "
                        f"Python reads (write it as a string); {what}") from None
    if isinstance(value, (dict, list)) and _too_deep(value, MAX_JSON_DEPTH):
        raise DataError(f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep; {what}")
    return value


def json_object(raw: str, where: str, what: str = "each line must be one JSON object") -> dict[str, Any]:
    """Parse one line (`where` is "file:line"); a DataError says what is wrong and what was expected."""
    obj = json_value(raw, where, what)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}; {what}")
    return obj


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def json_document(text: str, path: str, what: str) -> Any:
    """Parse a whole JSON file's text (`path` names it); like `json_value`, but each error names the line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); {what}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep; {what}") from None
    except ValueError as exc:
        limit = sys.get_int_max_str_digits()
        long = re.search(rf"\d{{{limit + 1},}}", text) if "integer string conversion" in str(exc) else None
        if long is None:
            raise DataError(f"{path}: not valid JSON ({exc}); {what}") from None
        raise DataError(f"{path}:{_line_of(text, long.start())}: an integer longer than {limit} digits, more than "
                        f"Python reads (write it as a string); {what}") from None
    if isinstance(value, (dict, list)) and _too_deep(value, MAX_JSON_DEPTH):
        raise DataError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep; {what}")
    return value

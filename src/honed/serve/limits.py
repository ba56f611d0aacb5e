"""What one request may ask of the server: bounds checked before any work is done, each a 400 that says which.

A client's `response_format` schema is compiled into a grammar, and the compiler expands every repetition
count: `"minItems": 1e9` once allocated ~17 GB. So a client schema is measured before it is compiled:

| bound | limit |
|---|---|
| the schema as compact JSON | 16 KiB |
| nesting of the schema document | 16 levels |
| property names, all objects together | 128 |
| minItems, maxItems, minLength, maxLength, minProperties, maxProperties, minContains, maxContains | 0 … 256 |
| a `pattern`: each `{n,m}` count ≤ 256, its expansion (counts multiplied through groups) | 1024 |
| `$ref` | local only (`#/…`): a remote one would be fetched |

A request body nests at most 64 levels; a pick request offers at most 64 candidates (the margin signal
decodes each one).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_SCHEMA_BYTES = 16 * 1024
MAX_SCHEMA_DEPTH = 16
MAX_SCHEMA_PROPERTIES = 128
MAX_SCHEMA_COUNT = 256
MAX_PATTERN_SIZE = 1024
MAX_BODY_DEPTH = 64
MAX_CANDIDATES = 64
COUNT_KEYWORDS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
                  "minContains", "maxContains")
_QUANTIFIER = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")


class LimitExceeded(ValueError):
    """A request asks more than this server's bounds allow (the message says which bound)."""


def depth(value: Any) -> int:
    """Nesting levels of a JSON value ({} and [] count one, scalars none); iterative, so any depth is safe."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in children)
    return deepest


def pattern_size(pattern: str) -> int:
    """Atoms a regex expands to when every `{n,m}` is copied out, as a grammar compiler does.

    An upper bound: alternatives add up, a quantified group multiplies its contents. Raises LimitExceeded for a
    count above MAX_SCHEMA_COUNT.
    """
    levels = [[0, 0]]  # per open group: [atoms so far, atoms of the last item]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "{" and (m := _QUANTIFIER.match(pattern, i)):
            counts = [int(m.group(1))] + ([int(m.group(3))] if m.group(3) else [])
            if max(counts) > MAX_SCHEMA_COUNT:
                raise LimitExceeded(f"pattern repeats {max(counts)} times; this server allows at most "
                                    f"{MAX_SCHEMA_COUNT}")
            times = max(counts) + (1 if m.group(2) and not m.group(3) else 0)
            top = levels[-1]
            top[0] += top[1] * (times - 1)
            top[1] *= times
            i = m.end()
            continue
        if c == "(":
            levels.append([0, 0])
            i += 1
            continue
        if c == ")" and len(levels) > 1:
            inner = levels.pop()[0]
            levels[-1][0] += inner
            levels[-1][1] = inner
            i += 1
            continue
        if c in "*+?|^$":
            i += 1
            continue
        if c == "\\":
            i += 2
        elif c == "[":
            j = i + 1 + (pattern[i + 1:i + 2] == "^")
            j += pattern[j:j + 1] == "]"  # a leading ] is a member, not the end
            while j < len(pattern) and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
        else:
            i += 1
        levels[-1][0] += 1
        levels[-1][1] = 1
    return sum(level[0] for level in levels)


def check_schema(schema: dict[str, Any]) -> None:
    """Refuse a client's JSON schema that would cost the grammar compiler more than these bounds allow."""
    size = len(json.dumps(schema, separators=(",", ":")).encode("utf-8"))
    if size > MAX_SCHEMA_BYTES:
        raise LimitExceeded(f"the schema is {size} bytes; this server allows at most {MAX_SCHEMA_BYTES}")
    levels = depth(schema)
    if levels > MAX_SCHEMA_DEPTH:
        raise LimitExceeded(f"the schema nests {levels} levels; this server allows at most {MAX_SCHEMA_DEPTH}")
    properties, stack = 0, [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        if isinstance(node.get("properties"), dict):
            properties += len(node["properties"])
        for key in COUNT_KEYWORDS:
            value = node.get(key)
            if value is None or isinstance(value, dict | list):  # a property may be *named* minItems
                continue
            whole = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not whole or value < 0 or value != int(value):
                raise LimitExceeded(f"{key} must be a whole number ≥ 0, got {json.dumps(value)}")
            if value > MAX_SCHEMA_COUNT:
                raise LimitExceeded(f"{key} {json.dumps(value)} is above this server's limit of {MAX_SCHEMA_COUNT}")
        pattern = node.get("pattern")
        if isinstance(pattern, str) and (n := pattern_size(pattern)) > MAX_PATTERN_SIZE:
            raise LimitExceeded(f"pattern expands to {n} atoms; this server allows at most {MAX_PATTERN_SIZE}")
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise LimitExceeded(f"$ref {ref[:64]!r}: only local references (#/...) are allowed")
    if properties > MAX_SCHEMA_PROPERTIES:
        raise LimitExceeded(f"the schema has {properties} properties; this server allows at most "
                            f"{MAX_SCHEMA_PROPERTIES}")

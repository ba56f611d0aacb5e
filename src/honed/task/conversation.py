"""Chat data: an input field that holds a conversation — a list of `{"role", "content"}` messages — for tasks that
classify or extract from a multi-turn exchange.

A conversation reaches the model through the one prompt builder like any other field: the task's template shows
it with the `transcript` filter (`{{ conversation | transcript }}`: one `role: content` line per turn) inside the
task's own user message, so the model judges the conversation instead of continuing it, and evaluation, training
and serving see the same text. Import reads a conversation from JSONL or Parquet as a list, and from a CSV cell as
its JSON text; a list of messages with a wrong role or a content that is not text is a file:row error.
"""

from __future__ import annotations

import json
from typing import Any

from honed.errors import DataError

ROLES = ("system", "user", "assistant", "tool")


def looks_like_conversation(value: Any) -> bool:
    """A non-empty list of objects that each have a role: meant as a conversation (it may still be malformed)."""
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def check_conversation(value: list[dict[str, Any]], where: str, field: str) -> list[dict[str, str]]:
    """The messages as {"role", "content"} pairs, or a DataError naming the turn that is wrong."""
    out = []
    for i, m in enumerate(value):
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise DataError(f"{where}: field {field!r}, message {i + 1}: role {role!r}; expected one of "
                            f"{', '.join(ROLES)}")
        if not isinstance(content, str):
            raise DataError(f"{where}: field {field!r}, message {i + 1}: content must be text, got "
                            f"{type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


def from_cell(value: Any, where: str, field: str) -> Any:
    """A field's value with a conversation recognised: a list as is, or a text cell holding one as JSON (CSV);
    anything else unchanged."""
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        value = parsed if looks_like_conversation(parsed) else value
    if looks_like_conversation(value):
        return check_conversation(value, where, field)
    return value


def transcript(messages: Any) -> str:
    """`role: content` per turn, one per line (the Jinja filter `transcript`); text other than a conversation is
    returned as it is."""
    if not looks_like_conversation(messages):
        return messages if isinstance(messages, str) else json.dumps(messages, ensure_ascii=False)
    return "\n".join(f"{m['role']}: {m.get('content', '')}" for m in messages)

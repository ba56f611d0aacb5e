"""Entity swaps: more training examples for an extraction task from the ones it has (mention replacement).

An extraction task that names its entities (`[extract] entities_key`) teaches two things at once: which words are
entities, and how the sentence relates them. With 80 sentences a small model memorises the second by name — on
examples/extract SmolLM2 wrote "ml team WRITTEN_IN PostgreSQL" because those names went with those relations in
training. A swap copies an example with each entity's name replaced, in the input and everywhere in the answer, by
the name of another training entity of the same kind (the entity object without its name: same type, same other
fields), so the relation has to be read off the sentence. Names come from the train split only (never val or the
locked test); an example whose entity names do not all occur verbatim in its inputs is not copied (a swap must
keep the input and the answer consistent).
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from typing import Any

from honed.task.data import Item
from honed.task.spec import Task


def _entities(task: Task, expected: Any) -> list[dict[str, Any]]:
    ex = task.spec.extract
    if ex is None or not ex.entities_key or not isinstance(expected, dict):
        return []
    items = expected.get(ex.entities_key)
    return [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []


def _kind(entity: dict[str, Any], name_field: str) -> str:
    return json.dumps({k: v for k, v in entity.items() if k != name_field}, sort_keys=True)


def _mention(name: str) -> str:
    """A regex of the name as a whole mention: not inside a longer word ("Go" is not in "Google")."""
    return rf"(?<!\w){re.escape(name)}(?!\w)"


def _replace_values(value: Any, mapping: dict[str, str]) -> Any:
    """Every string of the answer that is exactly an old name becomes the new one (entities and relationships)."""
    if isinstance(value, dict):
        return {k: _replace_values(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_values(v, mapping) for v in value]
    return mapping.get(value, value) if isinstance(value, str) else value


def swappable(task: Task) -> bool:
    """Whether the task declares what entity swaps need: an extraction task with `entities_key`."""
    return task.kind == "extract" and task.spec.extract is not None and bool(task.spec.extract.entities_key)


def swap_entities(task: Task, items: list[Item], copies: int, seed: int = 0) -> list[Item]:
    """Up to `copies` swapped copies of each item (the originals not included), ids "<id>~swap<k>".

    Deterministic for a seed. A copy needs at least one entity with another name of its kind; names of one item
    are never swapped for each other, and two entities of a copy never get the same name."""
    if copies <= 0 or not swappable(task):
        return []
    assert task.spec.extract is not None
    name_field = task.spec.extract.entity_name_field
    pool: dict[str, set[str]] = defaultdict(set)
    for it in items:
        for e in _entities(task, it.expected):
            if isinstance(e.get(name_field), str) and e[name_field].strip():
                pool[_kind(e, name_field)].add(e[name_field])
    rng = random.Random(seed)
    out: list[Item] = []
    for it in items:
        ents = [e for e in _entities(task, it.expected) if isinstance(e.get(name_field), str)]
        texts = [v for v in it.inputs.values() if isinstance(v, str)]
        own = {e[name_field] for e in ents}
        if not ents or not all(any(re.search(_mention(n), t) for t in texts) for n in own):
            continue
        for k in range(copies):
            mapping: dict[str, str] = {}
            for e in ents:
                old = e[name_field]
                if old in mapping:
                    continue
                choices = sorted(pool[_kind(e, name_field)] - own - set(mapping.values()))
                if choices:
                    mapping[old] = rng.choice(choices)
            if not mapping:
                break
            # one pass over each input for all names (longest first), so a new name is never replaced again
            pattern = re.compile("|".join(_mention(n) for n in sorted(mapping, key=len, reverse=True)))
            inputs = {key: pattern.sub(lambda m: mapping[m.group(0)], v) if isinstance(v, str) else v
                      for key, v in it.inputs.items()}
            out.append(Item(id=f"{it.id}~swap{k + 1}", inputs=inputs, expected=_replace_values(it.expected, mapping),
                            line=it.line))
    return out


__all__ = ["swap_entities", "swappable"]

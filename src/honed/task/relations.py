"""Which entity types a relation joins, and the check of an extraction answer against them.

A task's ontology says what kind of entity each relation joins: a team MANAGES a service, a service is
DEPLOYED_ON infrastructure. It is the `allowed_relationships` of LangChain's graph transformer and of Neo4j's graph
builder, declared in honed.toml as (source type, RELATION, target type) triples. A small model often names the
right pair and the right relation in the wrong order ("Oracle is managed by the infra team" → `Oracle MANAGES infra
team`): the types settle it. So every parsed answer is checked (`honed.evaluate.output.parse_output`, the one place
an output becomes an answer: evaluation, gate, export's rungs, serve, monitor):

- a relationship whose ends' types are listed for its relation stays;
- one listed only the other way round is turned round (source and target swapped);
- one listed neither way is dropped;
- one whose relation has no triple listed, or that names an entity the answer does not type, is left as it is:
  there is nothing to judge it by.

The check never adds a relationship and never changes a name, a relation or an entity. What it changed is kept
beside the answer (the unchecked JSON), so the model's own relationship F1 is still reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from honed.task.spec import ExtractSpec

MAX_ALLOWED_RELATIONSHIPS = 10_000
"""A cap on the declared triples: an ontology is tens of them; a file of millions is refused, not loaded."""


def norm_name(text: str) -> str:
    """An entity name as answers are compared: case and runs of whitespace do not matter."""
    return " ".join(text.lower().split())


def norm_relation(value: Any) -> str:
    """A relation as answers are compared: upper snake case ("depends on" → "DEPENDS_ON")."""
    return "_".join(str(value).upper().split())


@dataclass(frozen=True)
class Checked:
    """An answer after the check; `value` is the very object given when nothing changed."""

    value: Any
    flipped: int = 0
    dropped: int = 0


def _objects(value: Any, key: str | None) -> list[Any]:
    items = value.get(key) if key and isinstance(value, dict) else None
    return items if isinstance(items, list) else []


def entity_types(spec: ExtractSpec, value: Any) -> dict[str, set[str]]:
    """Normalized entity name → the types the answer gives it (a name typed twice keeps both)."""
    types: dict[str, set[str]] = {}
    for e in _objects(value, spec.entities_key):
        if isinstance(e, dict):
            name, kind = e.get(spec.entity_name_field), e.get(spec.entity_type_field)
            if isinstance(name, str) and isinstance(kind, str):
                types.setdefault(norm_name(name), set()).add(kind)
    return types


def _ends(spec: ExtractSpec, rel: Any) -> tuple[str, str, str] | None:
    """(source, relation, target) of a relationship object with three string fields; else None."""
    if not isinstance(rel, dict):
        return None
    values = tuple(rel.get(f) for f in spec.relationship_fields)
    return values if all(isinstance(v, str) for v in values) else None  # type: ignore[return-value]


def verdict(spec: ExtractSpec, types: dict[str, set[str]], source: str, relation: str, target: str) -> str:
    """"keep", "flip" or "drop" for one relationship, given the answer's entity types."""
    allowed = spec.allowed_set
    rel = norm_relation(relation)
    ts, tt = types.get(norm_name(source)), types.get(norm_name(target))
    if rel not in spec.checked_relations or not ts or not tt:
        return "keep"
    if any((a, rel, b) in allowed for a in ts for b in tt):
        return "keep"
    if any((b, rel, a) in allowed for a in ts for b in tt):
        return "flip"
    return "drop"


def check_relationships(spec: ExtractSpec | None, value: Any) -> Checked:
    """The answer with each relationship kept, turned round or dropped by the task's allowed triples."""
    if spec is None or not spec.allowed_relationships or not isinstance(value, dict):
        return Checked(value)
    rels = value.get(spec.relationships_key)  # type: ignore[arg-type]
    if not isinstance(rels, list):
        return Checked(value)
    types = entity_types(spec, value)
    src_field, _, tgt_field = spec.relationship_fields
    out: list[Any] = []
    flipped = dropped = 0
    for rel in rels:
        ends = _ends(spec, rel)
        what = "keep" if ends is None else verdict(spec, types, *ends)
        if what == "keep":
            out.append(rel)
        elif what == "flip":
            flipped += 1
            out.append({k: rel[tgt_field] if k == src_field else rel[src_field] if k == tgt_field else v
                        for k, v in rel.items()})
        else:
            dropped += 1
    if not (flipped or dropped):
        return Checked(value)
    return Checked({**value, spec.relationships_key: out}, flipped, dropped)  # type: ignore[dict-item]


def first_violation(spec: ExtractSpec | None, value: Any) -> str | None:
    """Why an expected answer contradicts the allowed triples (its first relationship that would not be kept)."""
    if spec is None or not spec.allowed_relationships:
        return None
    types = entity_types(spec, value)
    for i, rel in enumerate(_objects(value, spec.relationships_key), start=1):
        ends = _ends(spec, rel)
        if ends is None or verdict(spec, types, *ends) == "keep":
            continue
        source, relation, target = ends
        ts, tt = sorted(types[norm_name(source)]), sorted(types[norm_name(target)])
        return (f"relationship {i} ({source} {relation} {target}) joins {'/'.join(ts)} → {'/'.join(tt)}, which "
                f"[extract] allowed_relationships does not list for {norm_relation(relation)} (add "
                f'["{ts[0]}", "{norm_relation(relation)}", "{tt[0]}"] or correct the answer)')
    return None


def schema_enum(schema: dict[str, Any] | None, key: str | None, field: str) -> list[str] | None:
    """The enum the schema gives `key[].field` (entity types, relation names), when it gives one plainly."""
    node: Any = schema
    for step in ("properties", key, "items", "properties", field, "enum"):
        if not isinstance(node, dict) or step is None:
            return None
        node = node.get(step)
    return [v for v in node if isinstance(v, str)] if isinstance(node, list) else None


def schema_problem(spec: ExtractSpec, schema: dict[str, Any] | None) -> str | None:
    """A declared triple that names an entity type or relation the answer's schema does not allow."""
    types = schema_enum(schema, spec.entities_key, spec.entity_type_field)
    rels = schema_enum(schema, spec.relationships_key, spec.relationship_fields[1])
    for i, (ts, rel, tt) in enumerate(spec.allowed_relationships):
        for what, value, known in (("entity type", ts, types), ("relation", rel, rels), ("entity type", tt, types)):
            if known is not None and value not in known:
                return (f"[extract] allowed_relationships[{i}] {[ts, rel, tt]}: {what} {value!r} is not one the "
                        f"schema allows ({', '.join(known)})")
    return None

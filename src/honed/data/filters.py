"""The quality filters a generated (or imported) example must pass, each reporting who survived and why the
others did not (seed 002: "for every 1000 examples we generate, roughly 300 to 400 pass").

Order, and why:
1. `input_valid`   the teacher wrote a usable input (parsed, every field, a sane length, not cut off);
2. `near_duplicate` not a copy of a seed, of an existing item (the locked test set above all) or of another
                   candidate: run *before* labelling, so the teacher is not asked about dropped inputs;
3. `schema`        one of the teacher's k answers at least parses and fits the task (labels, range, schema);
4. `consistency`   the most common valid answer was given at least m times out of k (self-consistency);
5. `grounding`     every extracted value appears in the input and in its source document (extract tasks;
                   enum values such as entity types are exempt; other kinds pass, marked n/a).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from honed.data.dedup import DEFAULT_THRESHOLD, NearDuplicateIndex, item_text, normalize
from honed.errors import DataError
from honed.store import canonical_json
from honed.task.data import Item, _check_expected
from honed.task.spec import Task

ANSWER_STAGES = ("schema", "consistency", "grounding")
REPAIRABLE = ("schema", "grounding")
"""Stages whose rejection a teacher can fix when told why; disagreement is a confidence signal, not a bug."""


@dataclass
class Candidate:
    """One example on its way through the filters."""

    id: str
    inputs: dict[str, Any] | None
    """None when the teacher's text could not be read as an input."""
    source: str = ""
    """Text the answer must be grounded in: the document chunk, else the input itself."""
    origin: str = ""
    raw_input: str = ""
    """What the teacher wrote when asked for an input (empty for given inputs)."""
    input_problem: str | None = None
    """Why the input is unusable, found while parsing it."""
    answers: list[Any] = field(default_factory=list)
    causes: list[str | None] = field(default_factory=list)
    """Per answer: None, or why it failed to parse (honed.evaluate.output.FAILURE_CAUSES)."""
    texts: list[str] = field(default_factory=list)
    expected: Any = None
    rejected_at: str | None = None
    reason: str | None = None
    repaired: bool = False

    def reject(self, stage: str, reason: str) -> None:
        self.rejected_at, self.reason = stage, reason

    def item(self) -> Item:
        return Item(id=self.id, inputs=dict(self.inputs or {}), expected=self.expected)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Stage:
    name: str
    n_in: int
    n_out: int
    reasons: dict[str, int]
    note: str = ""


def _run(
    name: str, cands: list[Candidate], check: Callable[[Candidate], str | None], note: str = ""
) -> tuple[list[Candidate], Stage]:
    """Apply a per-candidate check (None: passes; text: the reason it fails)."""
    kept, reasons = [], Counter[str]()
    for c in cands:
        why = check(c)
        if why is None:
            kept.append(c)
        else:
            c.reject(name, why)
            reasons[why.split(":")[0]] += 1
    return kept, Stage(name, len(cands), len(kept), dict(reasons.most_common()), note)


def input_valid(
    cands: list[Candidate], fields: Sequence[str], max_chars: int | None = None, min_chars: int = 1
) -> tuple[list[Candidate], Stage]:
    """Inputs the teacher wrote must parse, have every field, and a length within what the seeds allow."""

    def check(c: Candidate) -> str | None:
        if c.input_problem:
            return c.input_problem
        if c.inputs is None:
            return "no input"
        missing = [f for f in fields if f not in c.inputs]
        if missing:
            return f"missing fields: {missing}"
        for f in fields:
            v = c.inputs[f]
            if isinstance(v, str) and not v.strip():
                return f"empty field: {f}"
        size = len(item_text(c.inputs))
        if max_chars is not None and size > max_chars:
            return f"too long: over {max_chars} characters"
        if size < min_chars:
            return f"too short: under {min_chars} characters"
        return None

    return _run("input_valid", cands, check)


def near_duplicate(
    cands: list[Candidate], existing: Sequence[tuple[Hashable, str]], threshold: float = DEFAULT_THRESHOLD
) -> tuple[list[Candidate], Stage]:
    """Drop candidates resembling an existing item (seeds, task splits) or an earlier candidate."""
    index = NearDuplicateIndex(threshold)
    index.add_many(list(existing))
    twins: dict[str, str] = {}
    for c in cands:
        text = item_text(c.inputs or {})
        hits = index.query(text)
        if hits:
            other, j = hits[0]
            twins[c.id] = f"near duplicate: of {other} (Jaccard {j:.2f})"
        else:
            index.add_many([(f"candidate {c.id}", text)])
    return _run("near_duplicate", cands, lambda c: twins.get(c.id), f"Jaccard ≥ {threshold}")


def _valid(task: Task, c: Candidate, answer: Any, cause: str | None) -> bool:
    if cause is not None or answer is None:
        return False
    try:
        _check_expected(task, Item(id=c.id, inputs=c.inputs or {}, expected=answer), c.id)
    except DataError:
        return False
    return True


def schema(task: Task, cands: list[Candidate]) -> tuple[list[Candidate], Stage]:
    def check(c: Candidate) -> str | None:
        if not c.answers:
            return "no answer"
        if any(_valid(task, c, a, k) for a, k in zip(c.answers, c.causes, strict=True)):
            return None
        worst = Counter(k or "invalid for the task" for k in c.causes).most_common(1)[0][0]
        return f"{worst}: none of {len(c.answers)} answers is valid"

    return _run("schema", cands, check)


def consistency(task: Task, cands: list[Candidate], min_agree: int) -> tuple[list[Candidate], Stage]:
    """Keep the majority valid answer when it was given at least `min_agree` times; it becomes `expected`."""

    def check(c: Candidate) -> str | None:
        votes = Counter(
            canonical_json(a) for a, k in zip(c.answers, c.causes, strict=True) if _valid(task, c, a, k)
        )
        top, n = votes.most_common(1)[0] if votes else ("", 0)
        if n < min_agree:
            return f"disagreement: top answer {n} of {len(c.answers)} < {min_agree}"
        c.expected = next(a for a in c.answers if canonical_json(a) == top)
        return None

    return _run("consistency", cands, check, f"≥ {min_agree} agree")


def _enum_strings(schema_doc: Any) -> set[str]:
    """Strings a schema fixes (enum/const): labels the model chooses, not values it copies from the source."""
    found: set[str] = set()
    if isinstance(schema_doc, dict):
        for key, value in schema_doc.items():
            if key == "enum" and isinstance(value, list):
                found |= {v for v in value if isinstance(v, str)}
            elif key == "const" and isinstance(value, str):
                found.add(value)
            else:
                found |= _enum_strings(value)
    elif isinstance(schema_doc, list):
        for value in schema_doc:
            found |= _enum_strings(value)
    return found


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, bool) or value is None:
        return []
    return [str(value)]


def ungrounded_values(task: Task, answer: Any, source: str) -> list[str]:
    """Extracted values of `answer` that do not occur in `source` (case, punctuation and spacing aside)."""
    exempt = _enum_strings(task.schema)
    text = f" {normalize(source)} "
    return [v for v in _leaves(answer) if v not in exempt and f" {normalize(v)} " not in text]


def grounding(task: Task, cands: list[Candidate]) -> tuple[list[Candidate], Stage]:
    if task.kind != "extract":
        return _run("grounding", cands, lambda c: None, f"n/a for {task.kind} tasks")

    def check(c: Candidate) -> str | None:
        # a value must be in the input (else it was not extracted from it) and in the source document the
        # input was written from (else the teacher made it up); without a document the input is the source
        text = item_text(c.inputs or {})
        missing = ungrounded_values(task, c.expected, text)
        if c.source and c.source != text:
            missing += [v for v in ungrounded_values(task, c.expected, c.source) if v not in missing]
        return f"not in source: {missing[:3]}" if missing else None

    return _run("grounding", cands, check, "values appear in the source")


def answer_filters(task: Task, cands: list[Candidate], min_agree: int) -> tuple[list[Candidate], list[Stage]]:
    """schema → consistency → grounding, on labelled candidates."""
    stages = []
    for fn in (
        lambda cs: schema(task, cs),
        lambda cs: consistency(task, cs, min_agree),
        lambda cs: grounding(task, cs),
    ):
        cands, stage = fn(cands)
        stages.append(stage)
    return cands, stages


@dataclass
class Survival:
    """Generated → after each filter → kept: the table `generate` and `filter` print and write."""

    generated: int
    stages: list[Stage]
    kept: int
    repair: dict[str, int] | None = None
    """{"tried": rejected by schema or grounding and asked again, "recovered": passed on the second try}."""
    classes: dict[str, int] = field(default_factory=dict)
    """Kept items per class (classify labels; NONE/PICK)."""
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "generated": self.generated,
            "stages": [asdict(s) for s in self.stages],
            "repair": self.repair,
            "kept": self.kept,
            "classes": self.classes,
            "warnings": self.warnings,
        }

    def table(self, title: str = "survival") -> Any:
        from rich.table import Table

        t = Table(title=title, title_justify="left")
        for col, just in (
            ("stage", "left"),
            ("in", "right"),
            ("kept", "right"),
            ("rejected", "right"),
            ("why rejected (top 3)", "left"),
        ):
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        t.add_row("generated", "", str(self.generated), "", "")
        for s in self.stages:
            why = ", ".join(f"{r} ({n})" for r, n in list(s.reasons.items())[:3])
            t.add_row(
                s.name + (f" [dim]({s.note})[/]" if s.note else ""),
                str(s.n_in),
                str(s.n_out),
                str(s.n_in - s.n_out),
                why,
            )
        if self.repair is not None:
            t.add_row(
                "repair (1 round)",
                str(self.repair["tried"]),
                f"+{self.repair['recovered']}",
                str(self.repair["tried"] - self.repair["recovered"]),
                "",
            )
        t.add_row("[bold]kept[/]", "", f"[bold]{self.kept}[/]", "", "")
        return t

    def markdown(self) -> str:
        lines = [
            "| stage | in | kept | rejected | why rejected (top 3) |",
            "|---|---:|---:|---:|---|",
            f"| generated | | {self.generated} | | |",
        ]
        for s in self.stages:
            why = ", ".join(f"{r} ({n})" for r, n in list(s.reasons.items())[:3])
            name = s.name + (f" ({s.note})" if s.note else "")
            lines.append(f"| {name} | {s.n_in} | {s.n_out} | {s.n_in - s.n_out} | {why} |")
        if self.repair is not None:
            lines.append(
                f"| repair (1 round) | {self.repair['tried']} | +{self.repair['recovered']} | "
                f"{self.repair['tried'] - self.repair['recovered']} | |"
            )
        lines.append(f"| **kept** | | **{self.kept}** | | |")
        return "\n".join(lines) + "\n"

"""Harvest: training data from the request log, chosen by rules over confidence signals (seed 000).

The cascade labels its own traffic: a pick that a downstream check confirmed is a training example; "all
layers failed" is a confident NONE; a pick that nothing confirmed is an edge case, held out for evaluation,
never trained on. Rules say which is which, first match wins:

    [[rule]]
    name = "confirmed"
    when = "downstream_confirmed == true"        # clauses joined by `and`
    [[rule]]
    name = "nothing found"
    when = "all_layers_failed == true"
    label = "NONE"                                # override the logged answer
    [[rule]]
    name = "probe found it"
    when = 'answer == "NONE" and probe_found == true'
    label_from = "probe_pick"                     # the answer is a signal's value
    [[rule]]
    name = "unconfirmed"
    when = "margin < 0.5"
    use = "edge"                                  # train (default) | edge | drop
    [oversample]
    NONE = 2                                      # seed 000's NONE x2

A clause is `NAME OP VALUE`: NAME is a signal (or `signals.NAME`), or a record field (answer, layer, model,
output); OP is == != < <= > >=; VALUE is JSON (true, 0.5, "NONE"). A missing signal makes the clause false.
Logged inputs that are locked test items, or near duplicates of one, are never harvested.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from honed.data.dedup import DEFAULT_THRESHOLD, NearDuplicateIndex, content_hash, item_text
from honed.data.io import input_fields
from honed.data.lock import read_lock
from honed.data.logs import LogRecord, read_log
from honed.data.reader import read_toml_file
from honed.data.split import stratum
from honed.errors import DataError
from honed.task.data import Item, _check_expected, load_items
from honed.task.spec import Task

_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$")
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_FIELDS = ("answer", "layer", "model", "output", "task")


@lru_cache(maxsize=256)
def parse_condition(text: str) -> tuple[tuple[str, str, Any], ...]:
    """`a == true and b < 0.5` → (("a", "==", True), ("b", "<", 0.5)); ValueError says what is wrong."""
    clauses = []
    for part in _AND.split(text.strip()):
        m = _CLAUSE.match(part)
        if not m:
            raise ValueError(f"clause {part!r}: expected NAME OP VALUE with OP one of == != < <= > >=")
        name, op, raw = m.groups()
        if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
            raw = json.dumps(raw[1:-1])
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f'clause {part!r}: value {raw} is not JSON (quote strings: "NONE")') from None
        except (ValueError, RecursionError):  # a 5000-digit integer, nesting deeper than the parser recurses
            raise ValueError(f"clause {name} {op} …: the value is a number too long or nesting too deep to read; "
                             "expected a short JSON value") from None
        if op in ("<", "<=", ">", ">=") and not _number(value):
            raise ValueError(f"clause {part!r}: {op} needs a number")
        clauses.append((name, op, value))
    return tuple(clauses)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    when: str
    """Condition over the record: clauses `NAME OP VALUE` joined by `and`."""
    use: Literal["train", "edge", "drop"] = "train"
    """What a matching record becomes: a training example, an edge case (held-out eval), or nothing."""
    label: Any = None
    """Answer to use instead of the logged one (e.g. "NONE" when every layer failed)."""
    label_from: str | None = None
    """Signal whose value is the answer (e.g. "probe_pick": the candidate a later layer found)."""
    name: str = ""
    """Name shown in the summary (default: the condition)."""

    @field_validator("when")
    @classmethod
    def _parses(cls, v: str) -> str:
        parse_condition(v)
        return v

    def matches(self, record: LogRecord) -> bool:
        for name, op, want in parse_condition(self.when):
            key = name.removeprefix("signals.")
            if name in _FIELDS:
                have = getattr(record, name)
            elif key in record.signals:
                have = record.signals[key]
            else:
                return False
            if op in ("==", "!="):
                # True == 1 in Python; in a rule, `confirmed == 1` must not match a boolean signal
                equal = (type(have) is bool) == (type(want) is bool) and have == want
                ok = equal if op == "==" else not equal
            else:
                if not _number(have):
                    return False
                ok = {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}[op]
            if not ok:
                return False
        return True


class HarvestRules(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, populate_by_name=True)

    rules: list[Rule] = Field(default=[], alias="rule")
    """Rules in order; the first that matches decides."""
    default: Literal["drop", "edge"] = "drop"
    """What happens to records that no rule matches."""
    oversample: dict[str, float] = {}
    """Class → factor (≥ 1) for training examples, e.g. {"NONE": 2}. Class: a classify label, or NONE/PICK."""
    task: str | None = None
    """Only records of this task (default: the task's name)."""

    @field_validator("oversample")
    @classmethod
    def _factors(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: f for k, f in v.items() if f < 1}
        if bad:
            raise ValueError(f"oversample factors must be >= 1, got {bad}")
        return v


def load_rules(path: Path) -> HarvestRules:
    """Read a rules TOML file; every problem is reported with its key."""
    if not Path(path).is_file():
        raise DataError(f"{path}: rules file not found")
    # bounded: a non-UTF-8 byte, an endless line or a 5000-digit integer is one error naming the line
    raw = read_toml_file(Path(path), "expected harvest rules: rule tables with when, use and label")
    return _validate(raw, str(path))


def _validate(raw: dict[str, Any], where: str) -> HarvestRules:
    try:
        return HarvestRules.model_validate(raw)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = (
                "unknown key"
                if err["type"] == "extra_forbidden"
                else err["msg"].removeprefix("Value error, ")
            )
            parts.append(f"{key}: {msg}")
        raise DataError(f"{where}: invalid harvest rules: " + "; ".join(parts)) from None


def parse_rule(spec: str) -> Rule:
    """Command-line rule `USE[ label=VALUE]: CONDITION`, e.g. `train label=NONE: all_failed == true`."""
    head, sep, cond = spec.partition(":")
    words = head.split()
    if not sep or not words or words[0] not in ("train", "edge", "drop"):
        raise DataError(
            f"--rule {spec!r}: expected 'train|edge|drop[ label=VALUE]: CONDITION', e.g. "
            "--rule 'edge: margin < 0.5'"
        )
    raw: dict[str, Any] = {"use": words[0], "when": cond.strip(), "name": spec.strip()}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if key != "label" or not eq:
            raise DataError(f"--rule {spec!r}: unknown option {word!r} (only label=VALUE)")
        try:
            raw["label"] = json.loads(value)
        except json.JSONDecodeError:
            raw["label"] = value
        except (ValueError, RecursionError):
            raise DataError(f"--rule {spec[:60]!r}…: label is a number too long or nesting too deep to read; "
                            "expected a short JSON value") from None
    return _validate({"rule": [raw]}, f"--rule {spec!r}").rules[0]


def build_rules(
    path: Path | None = None,
    rules: Sequence[str] = (),
    oversample: dict[str, str] | None = None,
    default: str | None = None,
) -> HarvestRules:
    """Rules from a file, then command-line rules appended, oversampling factors and the default merged in."""
    raw: dict[str, Any] = load_rules(path).model_dump(by_alias=True) if path else {}
    raw.setdefault("rule", [])
    raw["rule"] += [parse_rule(spec).model_dump() for spec in rules]
    for cls, factor in (oversample or {}).items():
        try:
            raw.setdefault("oversample", {})[cls] = float(factor)
        except ValueError:
            raise DataError(
                f"--oversample {cls}={factor}: the factor must be a number, e.g. NONE=2"
            ) from None
    if default is not None:
        raw["default"] = default
    return _validate(raw, "harvest rules")


@dataclass
class HarvestResult:
    train: list[Item]
    edge: list[Item]
    counts: dict[str, int]  # records read, used per outcome
    per_rule: dict[str, int]
    dropped: dict[str, int]  # reason → records
    oversampled: dict[str, int] = field(default_factory=dict)  # class → copies added
    notes: list[str] = field(default_factory=list)


def _oversample(
    task: Task, items: list[Item], factors: dict[str, float], seed: int
) -> tuple[list[Item], dict[str, int]]:
    rng = random.Random(seed)
    out, added = list(items), Counter[str]()
    for item in items:
        for cls, f in factors.items():
            if cls in (stratum(task, item), str(item.expected)):
                copies = int(f) - 1 + (rng.random() < f - int(f))
                for c in range(copies):
                    out.append(Item(id=f"{item.id}~{c + 2}", inputs=item.inputs, expected=item.expected))
                added[cls] += copies
                break
    return out, dict(added)


def harvest(
    task: Task, log: Path, rules: HarvestRules, *, threshold: float = DEFAULT_THRESHOLD, seed: int = 0
) -> HarvestResult:
    """Select training examples and edge cases from a request log by `rules`."""
    if not rules.rules:
        raise DataError("no harvest rules: give a rules file (--rules) or --rule 'train: CONDITION'")
    notes: list[str] = []
    needed = set(input_fields(task))
    lock = read_lock(task)
    locked = lock.input_hashes if lock is not None else {}
    train: list[Item] = []
    edge: list[Item] = []
    seen: set[str] = set()
    counts, per_rule, dropped = Counter[str](), Counter[str](), Counter[str]()
    for lineno, rec in read_log(log, notes):
        counts["records"] += 1
        if rec.task != (rules.task or task.name):
            dropped["other task"] += 1
            continue
        missing = needed - set(rec.input)
        if missing:
            raise DataError(
                f"{log}:{lineno}: field 'input' lacks {sorted(missing)}, which task {task.name!r} needs"
            )
        h = content_hash(rec.input)
        rule = next((r for r in rules.rules if r.matches(rec)), None)
        use = rule.use if rule is not None else rules.default
        if rule is not None:
            per_rule[rule.name or rule.when] += 1
        if use == "drop":
            dropped["no rule matched" if rule is None else "rule says drop"] += 1
            continue
        if h in locked:
            dropped["input is a locked test item"] += 1
            continue
        if h in seen:
            dropped["input already harvested"] += 1
            continue
        expected = rec.answer
        if rule is not None and rule.label is not None:
            expected = rule.label
        elif rule is not None and rule.label_from is not None:
            expected = rec.signals.get(rule.label_from)
        item = Item(id=f"log-{rec.request_id}", inputs=dict(rec.input), expected=expected, line=lineno)
        try:
            _check_expected(task, item, f"{log}:{lineno}")
        except DataError:
            dropped["answer not valid for the task"] += 1
            continue
        seen.add(h)
        (train if use == "train" else edge).append(item)
    if locked and (train or edge):
        index = NearDuplicateIndex(threshold)
        index.add_many([(i.id, item_text(i.inputs)) for i in load_items(task, "test")])
        near = {str(m.key) for m in index.query_many([(i.id, item_text(i.inputs)) for i in train + edge])}
        if near:
            dropped["near duplicate of a locked test item"] += len(near)
        train = [i for i in train if i.id not in near]
        edge = [i for i in edge if i.id not in near]
    counts["train"], counts["edge"] = len(train), len(edge)
    train, added = _oversample(task, train, rules.oversample, seed)
    counts["train_after_oversampling"] = len(train)
    return HarvestResult(train, edge, dict(counts), dict(per_rule), dict(dropped), added, notes)


def write_harvest(
    task: Task, result: HarvestResult, out_dir: Path, sources: Sequence[str]
) -> dict[str, Path]:
    """harvested.jsonl (train), edge_cases.jsonl (held-out eval) and harvest.json (the summary)."""
    from honed.data.io import write_items
    from honed.store import write_json_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "train": out_dir / "harvested.jsonl",
        "edge": out_dir / "edge_cases.jsonl",
        "summary": out_dir / "harvest.json",
    }
    write_items(task, paths["train"], result.train)
    write_items(task, paths["edge"], result.edge)
    write_json_atomic(
        paths["summary"],
        {
            "task": task.name,
            "sources": list(sources),
            "counts": result.counts,
            "per_rule": result.per_rule,
            "dropped": result.dropped,
            "oversampled": result.oversampled,
            "notes": result.notes,
        },
    )
    return paths


def harvest_table(result: HarvestResult) -> Any:
    """A rich table of where the log's records went: per rule, dropped by reason, oversampled."""
    from rich.table import Table

    t = Table(title=f"harvest: {result.counts.get('records', 0)} records", title_justify="left")
    t.add_column("")
    t.add_column("records", justify="right")
    for name, n in result.per_rule.items():
        t.add_row(f"rule: {name}", str(n))
    for reason, n in result.dropped.items():
        t.add_row(f"[dim]dropped: {reason}[/]", str(n))
    t.add_row("[bold]training examples[/]", str(result.counts.get("train", 0)))
    for cls, n in result.oversampled.items():
        t.add_row(f"  + copies of {cls} (oversampling)", str(n))
    t.add_row("[bold]edge cases (held out)[/]", str(result.counts.get("edge", 0)))
    return t

"""The task specification: `honed.toml`, validated by pydantic.

Every field has a docstring; validation collects all errors and reports them together with file and key.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from honed.errors import TaskError
from honed.task.relations import MAX_ALLOWED_RELATIONSHIPS, norm_relation, schema_problem

Kind = Literal["classify", "pick", "extract", "generate"]
SPLITS = ("train", "val", "test")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class DataSpec(_Strict):
    train: str | None = None
    """JSONL file of training items, relative to honed.toml."""
    val: str | None = None
    """JSONL file of validation items (used during training for early stopping)."""
    test: str | None = None
    """JSONL file of the locked test items that every evaluation and gate uses."""
    id_field: str = "id"
    """Field that holds an item's id; items without it get their line number."""
    expected_field: str = "expected"
    """Field that holds the expected answer."""


class PromptSpec(_Strict):
    system: str | None = None
    """System message. Leave empty for models whose template has no system role."""
    template: str
    """Jinja2 template of the user message. Variables: the item's fields, `task`; classify: `labels`, `none_label`,
    `descriptions`; pick: `candidates`, `numbered_candidates`, `none_label`; extract: `schema` (JSON text)."""
    tuned_template: str | None = None
    """Optional short template the *tuned* model is trained and served with (e.g. only the input, without the
    label list and descriptions a prompted model needs): the answer is learned, so the instructions need not be
    re-read at every step. `honed tune` uses it when set (recorded in the run's manifest as `prompt = "tuned"`);
    gate, export, serve and monitor then build the tuned model's prompts with it, and the base model's with
    `template`. Same variables as `template`."""
    tuned_system: str | None = None
    """System message that goes with `tuned_template` (unset: `system`)."""


class ClassifySpec(_Strict):
    labels: list[str] = Field(min_length=2)
    """The closed label set."""
    none_label: str | None = None
    """Optional out-of-scope label (e.g. "NONE") that the model may answer when no label fits."""
    descriptions: dict[str, str] = {}
    """Optional one-line description per label, available to the template as `descriptions`."""

    @model_validator(mode="after")
    def _check(self) -> ClassifySpec:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if self.none_label is not None and self.none_label in self.labels:
            raise ValueError(f"none_label {self.none_label!r} must not also be in labels")
        unknown = set(self.descriptions) - set(self.all_labels)
        if unknown:
            raise ValueError(f"descriptions for unknown labels: {sorted(unknown)}")
        return self

    @property
    def all_labels(self) -> list[str]:
        return self.labels + ([self.none_label] if self.none_label else [])


class PickSpec(_Strict):
    candidates_field: str = "candidates"
    """Input field holding the list of candidates; the template numbers them from 1."""
    none_label: str = "NONE"
    """What the model answers when no candidate fits."""


class ExtractSpec(_Strict):
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    """JSON Schema of the answer, inline."""
    schema_file: str | None = None
    """JSON Schema of the answer, in a file relative to honed.toml."""
    entities_key: str | None = None
    """Key of the list of entities (objects), for entity P/R/F1; e.g. "entities"."""
    entity_name_field: str = "name"
    """Field of an entity that identifies it."""
    relationships_key: str | None = None
    """Key of the list of relationships, for relationship P/R/F1 over (source, relation, target)."""
    relationship_fields: tuple[str, str, str] = ("source", "relation", "target")
    """Fields of a relationship object, in (source, relation, target) order."""
    entity_type_field: str = "type"
    """Field of an entity that holds its type (read by `allowed_relationships`)."""
    allowed_relationships: list[tuple[str, str, str]] = Field(default=[], max_length=MAX_ALLOWED_RELATIONSHIPS)
    """(source entity type, RELATION, target entity type) triples: which entities each relation may join. Every
    answer is checked against them (`honed.task.relations`): a relationship listed only the other way round is
    turned round, one listed neither way is dropped; a relation with no triple listed is not checked. Every
    expected answer in the data must satisfy them."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_schema(self) -> ExtractSpec:
        if (self.json_schema is None) == (self.schema_file is None):
            raise ValueError("give exactly one of `schema` (inline) or `schema_file`")
        if self.allowed_relationships and not (self.entities_key and self.relationships_key):
            raise ValueError("allowed_relationships needs `entities_key` (where the types are) and "
                             "`relationships_key` (what is checked)")
        seen: set[tuple[str, str, str]] = set()
        for triple in self.allowed_relationships:
            if triple in seen:
                raise ValueError(f"allowed_relationships lists {list(triple)} twice")
            seen.add(triple)
        return self

    @cached_property
    def allowed_set(self) -> frozenset[tuple[str, str, str]]:
        """The allowed triples, relations in upper snake case as answers are compared (built once per spec: every
        relationship of every parsed answer looks it up)."""
        return frozenset((s, norm_relation(r), t) for s, r, t in self.allowed_relationships)

    @cached_property
    def checked_relations(self) -> frozenset[str]:
        """The relations that have at least one allowed triple: only these are checked."""
        return frozenset(r for _, r, _ in self.allowed_set)


class FormatRule(_Strict):
    name: str
    """Name shown in reports."""
    pattern: str
    """Python regular expression searched in the output (multiline)."""
    must_match: bool = True
    """False: the pattern must NOT occur."""

    @model_validator(mode="after")
    def _compiles(self) -> FormatRule:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"rule {self.name!r}: invalid regular expression: {exc}") from None
        return self


class GenerateSpec(_Strict):
    rules: list[FormatRule] = []
    """Format rules every output must satisfy."""
    keywords: list[str] = []
    """Keywords every output should contain (case-insensitive); items may add their own in `keywords`."""


class GenerationSpec(_Strict):
    max_tokens: int | None = Field(default=None, gt=0)
    """Generation budget. Default by kind: classify 32, pick 16, extract 512, generate 768."""
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """0 is greedy; use > 0 with --repeats to measure consistency."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling."""
    seed: int = 0
    """Base seed; repeat r uses seed + r."""
    constrained: bool = False
    """Constrain decoding to the answer space (labels, numbers, JSON schema) where the backend can."""
    think: bool | None = False
    """Thinking for models that have it. False: ask them not to think (seed 003)."""


class AcceptanceSpec(_Strict):
    primary_metric: str | None = None
    """Metric the gate compares. Default by kind: macro_f1 (classify, pick), record_f1 (extract: each object of a list
    matched whole, so a relationship counts only with its source, relation and target right), format_pass_rate."""
    min_value: float | None = Field(default=None, ge=0.0)
    """The absolute score of the primary metric the task needs to be worth shipping (e.g. 0.80). The gate checks
    it beside the relative gain over the base; export, usage.md and monitor hold the shipped model to it. Unset:
    only the relative gain is checked, and the gate and the package say so plainly."""
    min_metrics: dict[str, Annotated[float, Field(ge=0.0, allow_inf_nan=False)]] = Field(default_factory=dict)
    """Bars for other metrics the task's kind reports, beside the primary one: `min_metrics = {entity_f1 = 0.80,
    relationship_f1 = 0.60}` for an extraction whose record F1 pools both (a pooled bar lets strong entities carry
    weak relationships). The gate checks each on the tuned model's locked-test answers; usage.md states them."""
    min_relative_improvement: float = 0.10
    """The fine-tune must beat its base by this fraction of the base's score (seed 004's 10%)."""
    max_p95_latency_ms: float | None = None
    """Latency budget, if any."""
    max_quant_drop: float = Field(default=0.02, ge=0.0)
    """`honed export` ships the smallest quantization whose primary metric is at most this much (absolute)
    below F16's. 0.02: the 10% gain the gate demands of a base scoring 0.2 is 0.02, so a rung losing more could
    hand back the whole fine-tune; on small tests one changed answer already exceeds it (then a bigger rung)."""
    max_forgetting: float = Field(default=0.25, ge=0.0)
    """The gate fails when the tuned model's mean per-token loss on honed's general prompts rises by more than
    this share of the base's (0.25: +25%)."""
    collapse_share: float = Field(default=0.9, gt=0.5, le=1.0)
    """The gate fails when this share of the tuned test answers is one answer while the test's most common
    expected answer is under 50% (seed 000's "NONE to everything")."""


class ArmSpec(_Strict):
    """One bake-off arm: a model plus the settings it runs with."""

    model: str
    """Alias, .gguf path (e.g. a rung made by `honed quantize`), HF folder, or served model name."""
    label: str | None = None
    """Name in reports (default: derived from the model and settings)."""
    backend: str = "llamacpp"
    """llamacpp | openai | ollama | transformers."""
    base_url: str | None = None
    """Server URL for HTTP backends."""
    adapter: str | None = None
    """PEFT adapter folder (transformers backend)."""
    constrained: bool | None = None
    """Constrained decoding on/off (default: the task's setting)."""
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    """Temperature override."""
    think: bool | None = None
    """Thinking on/off for models that have it."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Generation budget override."""
    prompt: Literal["base", "tuned"] | None = None
    """Which template builds the prompts: "base" (`[prompt] template`) or "tuned" (`tuned_template`, for a model
    fine-tuned on it). Default: the task's template in use."""

    def display(self) -> str:
        if self.label:
            return self.label
        name = Path(self.model).name.removesuffix(".gguf") if self.model.endswith(".gguf") else self.model
        extras = [f"{k}={v}" for k, v in (("constrained", self.constrained), ("T", self.temperature),
                                          ("think", self.think)) if v is not None]
        return name + (f" [{', '.join(extras)}]" if extras else "")


class BakeoffSpec(_Strict):
    arms: list[ArmSpec] = []
    """Arms compared by `honed bakeoff` when none are given on the command line."""
    hardware: str = "cpu-2core-vm"
    """Hardware profile for the cost model (see `honed bakeoff --help`)."""


DEFAULT_MAX_TOKENS = {"classify": 32, "pick": 16, "extract": 512, "generate": 768}
DEFAULT_PRIMARY = {"classify": "macro_f1", "pick": "macro_f1", "extract": "record_f1", "generate": "format_pass_rate"}


class TaskSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Short name: letters, digits, '-', '_', '.'."""
    kind: Kind
    """classify | pick | extract | generate."""
    description: str = ""
    """What the task is for, in a sentence."""
    data: DataSpec = DataSpec()
    prompt: PromptSpec
    classify: ClassifySpec | None = None
    pick: PickSpec | None = None
    extract: ExtractSpec | None = None
    generate: GenerateSpec | None = None
    generation: GenerationSpec = GenerationSpec()
    acceptance: AcceptanceSpec = AcceptanceSpec()
    bakeoff: BakeoffSpec = BakeoffSpec()

    @model_validator(mode="after")
    def _kind_section(self) -> TaskSpec:
        if self.kind == "pick" and self.pick is None:
            self.pick = PickSpec()
        if self.kind == "generate" and self.generate is None:
            self.generate = GenerateSpec()
        if getattr(self, self.kind) is None:
            raise ValueError(f"kind = {self.kind!r} needs a [{self.kind}] section")
        others = [k for k in ("classify", "pick", "extract", "generate") if k != self.kind and getattr(self, k)]
        if others:
            raise ValueError(f"kind = {self.kind!r} but the file also has [{'], ['.join(others)}]")
        return self


PromptVariant = Literal["base", "tuned"]
PROMPT_VARIANTS: tuple[str, ...] = ("base", "tuned")


class Task:
    """A loaded task: the validated spec plus where it lives, and which of its prompt templates is in use
    (`prompt`: "base" renders `[prompt] template`, "tuned" renders `tuned_template` — see `with_prompt`)."""

    def __init__(self, spec: TaskSpec, root: Path, source: Path | None = None, prompt: PromptVariant = "base"
                 ) -> None:
        self.spec = spec
        self.root = root
        self.source = source
        self.prompt: PromptVariant = prompt
        self.schema: dict[str, Any] | None = None
        if spec.extract is not None:
            self.schema = spec.extract.json_schema or _load_schema(root, spec.extract.schema_file or "", source)

    @property
    def has_tuned_prompt(self) -> bool:
        return self.spec.prompt.tuned_template is not None

    def with_prompt(self, variant: str) -> Task:
        """The same task building its prompts with another template ("base" or "tuned")."""
        if variant not in PROMPT_VARIANTS:
            raise TaskError(f"unknown prompt {variant!r}: expected one of {', '.join(PROMPT_VARIANTS)}")
        if variant == "tuned" and not self.has_tuned_prompt:
            raise TaskError(f"{self.source or self.root}: prompt \"tuned\" asked for, but [prompt] has no "
                            "tuned_template")
        if variant == self.prompt:
            return self
        task = Task(self.spec, self.root, self.source, variant)  # type: ignore[arg-type]
        task.schema = self.schema
        return task

    @property
    def prompt_template(self) -> str:
        """The Jinja2 user-message template of the prompt in use."""
        p = self.spec.prompt
        return p.tuned_template if self.prompt == "tuned" and p.tuned_template is not None else p.template

    @property
    def prompt_system(self) -> str | None:
        p = self.spec.prompt
        if self.prompt == "tuned" and p.tuned_system is not None:
            return p.tuned_system
        return p.system

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> Kind:
        return self.spec.kind

    @property
    def max_tokens(self) -> int:
        return self.spec.generation.max_tokens or DEFAULT_MAX_TOKENS[self.kind]

    @property
    def primary_metric(self) -> str:
        return self.spec.acceptance.primary_metric or DEFAULT_PRIMARY[self.kind]

    @property
    def labels(self) -> list[str]:
        """The answer space of a classify task, NONE label included."""
        return self.spec.classify.all_labels if self.spec.classify else []

    @property
    def none_label(self) -> str | None:
        if self.spec.classify:
            return self.spec.classify.none_label
        if self.spec.pick:
            return self.spec.pick.none_label
        return None

    def split_path(self, split: str) -> Path:
        if split not in SPLITS:
            raise TaskError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
        rel = getattr(self.spec.data, split)
        where = self.source or self.root
        if rel is None:
            raise TaskError(f"{where}: [data] has no `{split}` file; add `{split} = \"path/to/{split}.jsonl\"`")
        return (self.root / rel).resolve()


def _load_schema(root: Path, rel: str, source: Path | None) -> dict[str, Any]:
    path = root / rel
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"{source or root}: [extract] schema_file {rel!r} not found at {path}") from None
    except json.JSONDecodeError as exc:
        raise TaskError(f"{path}:{exc.lineno}: schema_file is not valid JSON: {exc.msg}") from None
    return schema


def format_validation_errors(source: Path | str, exc: ValidationError, what: str = "invalid task spec") -> str:
    """Every pydantic error of a file in one line: `file: what (N errors): key: message; key: message`."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        parts.append(f"{key}: {msg}")
    return f"{source}: {what} ({len(parts)} error{'s' * (len(parts) > 1)}): " + "; ".join(parts)


def load_task(path: str | Path, prompt: str = "base") -> Task:
    """Load a task from a `honed.toml` file or the folder holding one; `prompt`: which template builds prompts."""
    p = Path(path)
    source = p / "honed.toml" if p.is_dir() else p
    if not source.exists():
        raise TaskError(f"{source}: task file not found (give a task folder that contains honed.toml, "
                        "or the path of a honed.toml)")
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{source}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise TaskError(f"{source}: not UTF-8 text (byte {exc.start}: {exc.reason}); save honed.toml as UTF-8"
                        ) from None
    except (ValueError, RecursionError) as exc:  # an integer of thousands of digits, absurd nesting
        raise TaskError(f"{source}: not a usable TOML file ({str(exc)[:120]})") from None
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        raise TaskError(format_validation_errors(source, exc)) from None
    task = Task(spec, source.parent.resolve(), source)
    if task.schema is not None:
        try:
            jsonschema.validators.validator_for(task.schema).check_schema(task.schema)
        except jsonschema.SchemaError as exc:
            raise TaskError(f"{source}: [extract] schema is not a valid JSON Schema: {exc.message}") from None
    if spec.extract is not None and (problem := schema_problem(spec.extract, task.schema)):
        raise TaskError(f"{source}: {problem}")
    from honed.task.prompt import check_template

    check_template(task)
    return task.with_prompt(prompt)

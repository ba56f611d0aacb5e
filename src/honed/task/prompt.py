"""THE prompt builder. Evaluation, training and serving all call these functions, so the prompt a model is
trained on is byte-for-byte the prompt it is served (seed 000: `build_llm_prompt()` shared by both paths).

Two steps, kept apart so each can be checked:
1. `build_messages(task, item)`: the task's Jinja2 template (sandboxed) → chat messages.
2. `render_chat(messages, chat_template)`: the model's own chat template → the exact text the model sees;
   `render_plain` for base models that have no chat template (honed says so when it uses it).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from honed.errors import DataError, TaskError
from honed.task.conversation import transcript
from honed.types import Constraint, Message, Request, Sampling

if TYPE_CHECKING:
    from honed.backends.base import Backend
    from honed.task.data import Item
    from honed.task.spec import Task


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


@lru_cache(maxsize=1)
def _env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, undefined=jinja2.StrictUndefined
    )
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    env.filters["transcript"] = transcript  # a conversation field as `role: content` lines (chat data)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    return _env().from_string(source)


def check_template(task: Task) -> None:
    """Compile the task's templates now, so a syntax error is reported at load time with its line."""
    p = task.spec.prompt
    for key, src in (("prompt.template", p.template), ("prompt.system", p.system),
                     ("prompt.tuned_template", p.tuned_template), ("prompt.tuned_system", p.tuned_system)):
        if src is None:
            continue
        try:
            _compile(src)
        except jinja2.TemplateSyntaxError as exc:
            raise TaskError(f"{task.source}: {key} line {exc.lineno}: Jinja2 syntax error: {exc.message}") from None


def template_context(task: Task, inputs: dict[str, Any]) -> dict[str, Any]:
    ctx: dict[str, Any] = dict(inputs)
    ctx["task"] = {"name": task.name, "kind": task.kind, "description": task.spec.description}
    if task.spec.classify:
        ctx.setdefault("labels", task.spec.classify.labels)
        ctx.setdefault("none_label", task.spec.classify.none_label)
        ctx.setdefault("descriptions", task.spec.classify.descriptions)
    if task.spec.pick:
        cands = inputs.get(task.spec.pick.candidates_field)
        if not isinstance(cands, list):
            raise DataError(f"pick task: input field {task.spec.pick.candidates_field!r} must be a list of candidates")
        ctx["candidates"] = cands
        ctx["numbered_candidates"] = "\n".join(f"{i}. {c}" for i, c in enumerate(cands, 1))
        ctx.setdefault("none_label", task.spec.pick.none_label)
    if task.schema is not None:
        ctx.setdefault("schema", json.dumps(task.schema, ensure_ascii=False))
    return ctx


def build_messages(task: Task, inputs: dict[str, Any]) -> tuple[Message, ...]:
    """Render the task prompt for one item's input fields into chat messages (with the template of
    `task.prompt`: the base template, or the tuned model's short one)."""
    ctx = template_context(task, inputs)
    messages = []
    try:
        if task.prompt_system:
            messages.append(Message("system", _compile(task.prompt_system).render(ctx).strip()))
        messages.append(Message("user", _compile(task.prompt_template).render(ctx).strip()))
    except jinja2.UndefinedError as exc:
        raise DataError(
            f"{task.source}: prompt template uses a variable the item does not have ({exc.message}); "
            f"item fields: {sorted(inputs)}"
        ) from None
    return tuple(messages)


def build_answer(task: Task, expected: Any) -> str:
    """The exact completion text a model should produce for an expected answer (training target)."""
    if task.kind == "extract":
        return json.dumps(expected, ensure_ascii=False)
    return str(expected)


def build_constraint(task: Task, inputs: dict[str, Any]) -> Constraint:
    """The answer space of the task, for constrained decoding."""
    if task.kind == "classify":
        return Constraint("choice", choices=tuple(task.labels))
    if task.kind == "pick":
        assert task.spec.pick is not None
        n = len(inputs.get(task.spec.pick.candidates_field) or [])
        return Constraint("choice", choices=tuple(str(i) for i in range(1, n + 1)) + (task.spec.pick.none_label,))
    if task.kind == "extract":
        return Constraint("json_schema", schema=task.schema)
    raise TaskError(f"{task.source}: constrained decoding is not defined for kind {task.kind!r}")


def decide_constrained(task: Task, requested: bool | None = None) -> bool:
    """Whether answers to `task` are decoded under its answer-space constraint: the caller's choice (a CLI flag,
    a serve setting), else the task's `[generation] constrained`; never for kind generate (free text has no
    answer space). The one place this is decided."""
    want = task.spec.generation.constrained if requested is None else requested
    return bool(want) and task.kind != "generate"


def sampling_for(task: Task, repeat: int, max_tokens: int | None = None, temperature: float | None = None,
                 think: bool | None = None) -> Sampling:
    """The task's decoding settings for repeat `repeat` (seed + repeat), with optional overrides."""
    g = task.spec.generation
    return Sampling(max_tokens=max_tokens or task.max_tokens,
                    temperature=g.temperature if temperature is None else temperature, top_p=g.top_p,
                    seed=g.seed + repeat, think=g.think if think is None else think)


def build_request(task: Task, item: Item | dict[str, Any], sampling: Sampling, constrained: bool | None = None,
                  backend: Backend | None = None, *, unhonoured: Literal["refuse", "free"] = "refuse",
                  follow_up: tuple[Message, ...] = ()) -> Request:
    """Everything a backend needs for one item (or one item's input fields): the one entry point of eval, gate,
    tune, verify, monitor, serve and the data teacher.

    With `backend`, a constraint the backend cannot honour is refused here, before any answer is asked: a run
    that says "constrained" and decodes free would compare unlike with like. Serve's cascade passes
    `unhonoured="free"`: a layer that cannot constrain (an upstream API) answers free, and its signals say so.
    `follow_up`: turns after the task's prompt (the teacher's repair round: its rejected answer and why).
    """
    inputs = item if isinstance(item, dict) else item.inputs
    constraint = build_constraint(task, inputs) if decide_constrained(task, constrained) else None
    if backend is not None and not backend.honours(constraint):
        assert constraint is not None
        if unhonoured == "free":
            constraint = None
        else:
            raise TaskError(f"{task.source}: the {backend.name} backend cannot constrain decoding to "
                            f"{'a JSON schema' if constraint.kind == 'json_schema' else 'a list of choices'}; "
                            "evaluate with --free (or [generation] constrained = false), or with the llamacpp "
                            "backend on a GGUF of the model")
    return Request(messages=build_messages(task, inputs) + follow_up, sampling=sampling, constraint=constraint)


def render_chat(
    messages: tuple[Message, ...] | list[Message],
    chat_template: str,
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """Apply a model's chat template (the Jinja2 text stored in its GGUF or tokenizer_config) to messages."""
    try:
        return _compile(chat_template).render(
            messages=[m.as_dict() for m in messages],
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except jinja2.TemplateError as exc:
        raise TaskError(f"the model's chat template failed on these messages: {exc}") from None


def render_plain(messages: tuple[Message, ...] | list[Message]) -> str:
    """Completion-style prompt for base models that have no chat template.

    The answer is expected right after "Answer:"; a base model continues text, so the stop strings of
    `PLAIN_STOP` end it at the next line.
    """
    parts = [m.content for m in messages if m.role in ("system", "user")]
    return "\n\n".join(parts) + "\n\nAnswer:"


PLAIN_STOP = ("\n\n", "\nQuestion:", "\nInput:")

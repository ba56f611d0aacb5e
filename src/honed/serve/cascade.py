"""The task route's cascade: prompt → constrained decoding → validation → confidence → next layer or answer.

Each layer runs one *attempt* in its own worker thread: the greedy answer (the decoding the gate measured),
its validity (`honed.evaluate.output.parse_output`, with no expected answer at serve time), and a confidence
signal:

- **margin** (classify and pick, in-process llama.cpp): the log-probability of every allowed answer as the
  whole reply (its canonical tokens plus the end of the turn), normalised over the answer set;
  margin = p(answer) − p(best other answer). Negative when the greedy answer is not the most probable whole
  answer. Cheap: one small batch per allowed answer on top of the cached prompt.
- **consistency** (any kind, any backend): `samples` answers drawn at `sample_temperature`; agreement = the
  share equal to the greedy answer. Costs `samples` more generations.

An attempt that is invalid, or below the threshold, sends the request to the next layer; the last layer
answers whatever it says. Every attempt's validity and signals go into the response's `signals` and the log.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from honed.evaluate.output import parse_output
from honed.serve.config import ServeConfig
from honed.serve.layers import Layer
from honed.task.prompt import build_constraint, build_request, sampling_for
from honed.task.spec import Task
from honed.types import Request, Response, Sampling

Signal = bool | int | float | str | None


@dataclass
class Attempt:
    """What one layer said about one request."""

    layer: Layer
    response: Response
    answer: Any
    valid: bool
    cause: str | None
    signals: dict[str, Signal] = field(default_factory=dict)
    escalate_reason: str | None = None
    seconds: float = 0.0


@dataclass
class TaskAnswer:
    answer: Any
    output: str
    layer: Layer
    valid: bool
    signals: dict[str, Signal]
    attempts: list[Attempt]


def answer_space(task: Task, inputs: dict[str, Any]) -> tuple[str, ...] | None:
    """The allowed answers of a classify or pick request; None for kinds with an open answer space."""
    if task.kind not in ("classify", "pick"):
        return None
    return build_constraint(task, inputs).choices


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _scalar(value: Any) -> Signal:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _margin(layer: Layer, request: Request, choices: tuple[str, ...], answer: Any) -> dict[str, Signal]:
    score = getattr(layer.backend, "choice_logprobs", None)
    if score is None:
        return {"margin": None, "confidence": "margin unavailable for this backend"}
    logprobs = score(request, choices)
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    probs = {c: w / total for c, w in zip(choices, weights, strict=True)}
    best = max(probs, key=probs.__getitem__)
    key = str(answer) if answer is not None else best
    p_answer = probs.get(key, 0.0)
    p_other = max((p for c, p in probs.items() if c != key), default=0.0)
    return {"margin": round(p_answer - p_other, 6), "p_answer": round(p_answer, 6), "top_answer": best,
            "confidence": "margin"}


def _consistency(layer: Layer, task: Task, inputs: dict[str, Any], request: Request, answer: Any,
                 cfg: ServeConfig) -> dict[str, Signal]:
    base = request.sampling
    requests = [Request(request.messages, Sampling(max_tokens=base.max_tokens, temperature=cfg.sample_temperature,
                                                   top_p=base.top_p, seed=base.seed + 1 + i, stop=base.stop,
                                                   think=base.think), request.constraint)
                for i in range(cfg.samples)]
    answers = [parse_output(task, inputs, r).answer for r in layer.backend.generate(requests)]
    agree = sum(1 for a in answers if a is not None and _same(a, answer))
    return {"agreement": round(agree / len(answers), 6), "samples": len(answers), "confidence": "consistency"}


def attempt(layer: Layer, task: Task, inputs: dict[str, Any], cfg: ServeConfig, judge: bool = True,
            on_text: Callable[[str], None] | None = None) -> Attempt:
    """One layer's answer, validity and, when `judge`, its confidence (runs in the layer's worker thread);
    `on_text` is handed the answer's text as it is decoded."""
    t0 = time.perf_counter()
    # a layer whose backend cannot constrain (an upstream API) answers free, and its signals say so
    request = build_request(task, inputs, sampling_for(task, 0), cfg.constrained, layer.backend, unhonoured="free")
    response = (layer.backend.stream(request, on_text) if on_text is not None
                else layer.backend.generate([request])[0])
    parsed = parse_output(task, inputs, response)
    valid = parsed.cause is None
    signals: dict[str, Signal] = {"constrained": request.constraint is not None}
    reason = None if valid else f"invalid:{parsed.cause}"
    if valid and judge:
        choices = answer_space(task, inputs)
        if cfg.confidence == "margin" and choices is not None:
            signals.update(_margin(layer, request, choices, parsed.answer))
            margin = signals.get("margin")
            if isinstance(margin, float | int) and margin < cfg.min_margin:
                reason = "low_margin"
        elif cfg.confidence == "consistency":
            signals.update(_consistency(layer, task, inputs, request, parsed.answer, cfg))
            agreement = signals["agreement"]
            if isinstance(agreement, float | int) and agreement < cfg.min_agreement:
                reason = "low_agreement"
    return Attempt(layer, response, parsed.answer, valid, parsed.cause, signals, reason,
                   time.perf_counter() - t0)


async def run_cascade(layers: list[Layer], task: Task, inputs: dict[str, Any], cfg: ServeConfig,
                      on_text: Callable[[str], None] | None = None) -> TaskAnswer:
    """Try the layers in order until one answers validly and confidently; the last one answers regardless.

    `on_text` streams the primary's answer as it is decoded (validation and escalation come after it: the
    caller's final event says which answer stands).

    Confidence is measured on the primary (the log keeps it for harvest even without a fallback) and on every
    layer that could still escalate; a last fallback's answer is final, so its confidence is not paid for.
    """
    attempts: list[Attempt] = []
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        judge = (not last or i == 0) and cfg.confidence != "none"
        done = await layer.worker.run(functools.partial(attempt, layer, task, inputs, cfg, judge,
                                                        on_text if i == 0 else None))
        attempts.append(done)
        if done.escalate_reason is None:
            break
    return combine(attempts)


def combine(attempts: list[Attempt]) -> TaskAnswer:
    """The answer to return and the flat signals to log, from the attempts made in order.

    The first attempt that did not ask to escalate answers. When every layer escalated (only possible when
    the last one is invalid), the latest valid answer wins, else the last layer's invalid output.
    """
    chosen = next((a for a in attempts if a.escalate_reason is None), None)
    if chosen is None:
        chosen = next((a for a in reversed(attempts) if a.valid), attempts[-1])
    signals: dict[str, Signal] = {
        "escalated": len(attempts) > 1,
        "layers_tried": len(attempts),
        "reason": attempts[0].escalate_reason if len(attempts) > 1 else None,
        "all_layers_failed": not any(a.valid for a in attempts),
    }
    for a in attempts:
        p = a.layer.name
        signals[f"{p}_valid"] = a.valid
        signals[f"{p}_answer"] = _scalar(a.answer)
        signals[f"{p}_ms"] = round(a.seconds * 1000, 1)
        if a.cause:
            signals[f"{p}_cause"] = a.cause
        for key, value in a.signals.items():
            signals[f"{p}_{key}"] = value
    # The answering layer's own confidence under the plain names that harvest rules use (`margin < 0.5`).
    for key in ("margin", "p_answer", "agreement"):
        if key in chosen.signals:
            signals[key] = chosen.signals[key]
    return TaskAnswer(chosen.answer, chosen.response.text, chosen.layer, chosen.valid, signals, attempts)

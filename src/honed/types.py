"""Small shared value types: what goes into a backend and what comes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Constraint:
    """Constrained decoding, where a backend supports it.

    kind "json_schema": `schema` is a JSON Schema the output must satisfy.
    kind "choice": the output must be exactly one of `choices`.
    """

    kind: Literal["json_schema", "choice"]
    schema: dict[str, Any] | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. Part of the cache key: change one and the answer is asked again."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    think: bool | None = None  # None: backend default; False: ask thinking models not to think

    def key(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": list(self.stop),
            "think": self.think,
        }


@dataclass(frozen=True)
class Request:
    """One generation request: chat messages (rendered to text by the backend's chat template)."""

    messages: tuple[Message, ...]
    sampling: Sampling = field(default_factory=Sampling)
    constraint: Constraint | None = None


@dataclass
class Response:
    """What a backend returns for one request, with its timings."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None  # time to first token; None where the backend cannot tell
    latency_s: float = 0.0
    error: str | None = None
    prompt_text: str | None = None  # the exact text the model saw, where the backend renders it

    @property
    def tokens_per_s(self) -> float | None:
        gen_time = self.latency_s - (self.ttft_s or 0.0)
        if self.completion_tokens <= 1 or gen_time <= 0:
            return None
        return (self.completion_tokens - 1) / gen_time


@dataclass(frozen=True)
class ModelInfo:
    """Which model answered: enough to trace every number back to a file."""

    name: str
    backend: str
    path: str | None = None
    sha256: str | None = None  # None for remote models whose file honed cannot see
    chat_template: bool = True  # False: a base model, prompted with plain completion text
    details: dict[str, Any] = field(default_factory=dict)

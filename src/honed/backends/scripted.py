"""A backend that answers from a script: only for planting exact outputs (a collapse, malformed JSON, a refusal,
a cut at max_tokens) in unit tests of scoring and guardrails. Never a stand-in for a model that can run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from honed.backends.base import Backend
from honed.store import sha256_text
from honed.types import ModelInfo, Request, Response

Script = Callable[[Request], "str | Response"]


class ScriptedBackend(Backend):
    name = "scripted"

    def __init__(self, model: str = "scripted", *, script: Script | None = None) -> None:
        self._script = script or (lambda req: "")
        self.info = ModelInfo(name=model, backend=self.name, sha256=sha256_text(f"scripted:{model}"))
        self.calls = 0

    def generate(self, requests: Sequence[Request]) -> list[Response]:
        out = []
        for req in requests:
            self.calls += 1
            r = self._script(req)
            out.append(r if isinstance(r, Response) else
                       Response(text=r, finish_reason="stop", completion_tokens=max(1, len(r.split())),
                                prompt_tokens=sum(len(m.content.split()) for m in req.messages),
                                ttft_s=0.001, latency_s=0.002))
        return out

"""The backend contract: one method, `generate(requests) -> responses`, plus capability flags.

A backend owns one model. It renders messages with that model's chat template (or a plain completion prompt
for base models), decodes, and reports timings. Heavy imports (llama_cpp, torch) happen inside the backend's
module, which the registry imports only when the backend is asked for.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from honed.types import Constraint, ModelInfo, Request, Response

if TYPE_CHECKING:
    from honed.task.chat import ChatFormat


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (`taskset`, a container's cpuset, a test worker's share),
    which `os.cpu_count()` ignores. torch's threads follow the affinity already; llama.cpp's are set from this."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


class StreamStopped(Exception):
    """Raised by a `Backend.stream` listener to stop decoding (the client went away, or its time ran out)."""


class Backend(ABC):
    name: ClassVar[str]
    supports_schema: ClassVar[bool] = False
    """Can constrain output to a JSON schema."""
    supports_choice: ClassVar[bool] = False
    """Can constrain output to one of a list of strings."""
    streams: ClassVar[bool] = False
    """Decodes as a stream: measures time to first token, and `stream` hands over text as it is decoded."""
    in_process: ClassVar[bool] = False
    """Runs inside this process (one request at a time; peak memory is this process's RSS)."""

    info: ModelInfo
    chat_format: ChatFormat | None = None
    """The model's chat format where honed renders the prompt itself (in-process models); None where a server
    applies its own template."""

    max_batch: ClassVar[int] = 1
    """How many requests one `generate` call answers together (an in-process model batches them)."""

    def honours(self, constraint: Constraint | None) -> bool:
        """Whether this backend decodes under `constraint` (no constraint: always)."""
        if constraint is None:
            return True
        return self.supports_choice if constraint.kind == "choice" else self.supports_schema

    @property
    def max_concurrency(self) -> int:
        """How many requests may be in flight at once. In-process models serve one at a time."""
        return 1 if self.in_process else 64

    @abstractmethod
    def generate(self, requests: Sequence[Request]) -> list[Response]:
        """Answer each request, in order. A failed request gives a Response with finish_reason "error"."""

    def stream(self, request: Request, on_text: Callable[[str], None]) -> Response:
        """Answer one request, handing each piece of text to `on_text` as it is decoded; `on_text` may raise
        (e.g. `StreamStopped`, when the client left) to stop decoding. A backend that does not stream hands over
        the whole answer at the end."""
        response = self.generate([request])[0]
        if response.text and response.finish_reason != "error":
            on_text(response.text)
        return response

    def cache_identity(self) -> str:
        """What identifies the model in the response cache: the file's sha256 where honed can see the file."""
        return self.info.sha256 or f"{self.info.backend}:{self.info.name}:{self.info.details.get('base_url', '')}"

    def close(self) -> None:
        """Release the model. Safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

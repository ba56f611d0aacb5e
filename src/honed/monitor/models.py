"""Which model answers the monitor's questions, and how: the package's recommended rung in-process, a running
server, or a candidate model; always through the package task's prompt builder, greedy, never from the cache
(a monitor that replays cached answers checks nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from honed.backends import Backend, open_backend
from honed.errors import BackendUnavailable, UserError
from honed.evaluate.scoring import ItemRecord, judge
from honed.exporting.package import MANIFEST, Package, load_package
from honed.task.data import Item
from honed.task.prompt import build_request, sampling_for
from honed.task.spec import Task


def served_model(endpoint: str) -> str:
    """The first model id a server lists at `GET {endpoint}/models` (what `honed serve` calls the package)."""
    import httpx

    url = endpoint.rstrip("/") + "/models"
    try:
        data = httpx.get(url, timeout=10).json().get("data") or []
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise BackendUnavailable(f"{url}: cannot list the served models ({exc}); is `honed serve` running?") from None
    ids = [m.get("id") for m in data if isinstance(m, dict) and m.get("id")]
    if not ids:
        raise BackendUnavailable(f"{url}: the server lists no model")
    return str(ids[0])


def open_incumbent(pkg: Package, endpoint: str | None = None) -> Backend:
    """The shipped model: the package's recommended rung in-process, or the server at `endpoint`."""
    if endpoint:
        return open_backend("openai", served_model(endpoint), base_url=endpoint)
    from honed.exporting.verify import package_gguf

    # the checked path: a rung edited since export (even with its mtime restored) or outside the package is refused
    return open_backend("llamacpp", str(package_gguf(pkg)))


def open_candidate(ref: str) -> tuple[Backend, str]:
    """A candidate: a package folder (its recommended rung) or a model alias / GGUF path. (backend, label)."""
    path = Path(ref)
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise UserError(f"{ref}: a folder, but not a honed package (no {MANIFEST}); pass a package, a model "
                            "alias or a .gguf path as --candidate")
        from honed.exporting.verify import package_gguf

        cand = load_package(path)
        return open_backend("llamacpp", str(package_gguf(cand))), f"{cand.manifest.task}-{cand.manifest.version}"
    return open_backend("llamacpp", ref), ref


def answer_items(task: Task, backend: Backend, items: Sequence[Item],
                 on_done: Callable[[int], None] | None = None) -> list[ItemRecord]:
    """Greedy answers of `backend` to `items`, judged by the task (decoding as the task says: constrained or
    not, its max_tokens); one request at a time so a progress callback can follow."""
    sampling = sampling_for(task, 0)
    records = []
    for item in items:
        resp = backend.generate([build_request(task, item, sampling, backend=backend)])[0]
        records.append(judge(task, item, 0, resp))
        if on_done is not None:
            on_done(1)
    return records


def is_valid(rec: ItemRecord) -> bool:
    """An answer in the task's answer space (right or wrong), as opposed to a failure to answer."""
    return rec.cause in (None, "wrong_answer")

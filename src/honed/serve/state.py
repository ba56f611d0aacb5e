"""What a running server holds: its layers (models), tasks, request log, metrics, keys and rate limiter."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

from honed.errors import UserError
from honed.exporting.package import MANIFEST, Package, load_package
from honed.serve.auth import KeyCheck, RateLimiter
from honed.serve.config import ServeConfig
from honed.serve.layers import Layer, open_layer
from honed.serve.metrics import Metrics
from honed.serve.requestlog import RequestLog
from honed.task.spec import Task, load_task


@dataclass
class Server:
    cfg: ServeConfig
    layers: list[Layer]
    tasks: dict[str, Task]
    log: RequestLog
    metrics: Metrics
    keys: KeyCheck
    limiter: RateLimiter
    package: Package | None = None
    started: float = field(default_factory=time.time)

    def layer_for_model(self, model_id: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.model_id == model_id), None)

    def close(self) -> None:
        for layer in self.layers:
            layer.close()


def _package_primary(pkg: Package, quant: str | None) -> tuple[str, str]:
    """(gguf path, model id) of the rung to serve, through verify's checked path: a rung outside the package, not
    listed in the manifest's `files`, or whose bytes (re-hashed, never the sha256 cache) differ is refused."""
    from honed.exporting.verify import package_gguf

    gguf = package_gguf(pkg, quant)
    return str(gguf), gguf.stem


def open_server(cfg: ServeConfig) -> Server:
    """Load the tasks and the models of every layer (errors surface here, before the port opens)."""
    cfg.check_exposure()
    target = Path(cfg.target).expanduser()
    package = None
    tasks: list[Task] = []
    if target.is_dir():
        if not (target / MANIFEST).is_file():
            raise UserError(f"{target}: not a honed package (no {MANIFEST}); give a package from `honed export`, "
                            "a model alias or a .gguf file")
        package = load_package(target)
        spec, model_id = _package_primary(package, cfg.quant)
        tasks.append(package.task())
    else:
        spec, model_id = cfg.target, None
    tasks += [load_task(p) for p in cfg.tasks]
    by_name: dict[str, Task] = {}
    for t in tasks:
        if t.name in by_name:
            raise UserError(f"two tasks are named {t.name!r} ({by_name[t.name].root} and {t.root}); task names "
                            "are their routes and must differ")
        by_name[t.name] = t
    layers: list[Layer] = []
    try:
        layers.append(open_layer(spec, "primary", n_ctx=cfg.n_ctx, n_threads=cfg.n_threads,
                                 max_queue=cfg.max_queue, model_id=model_id))
        for i, fb in enumerate(cfg.fallbacks):
            name = "fallback" if i == 0 else f"fallback{i + 1}"
            layer = open_layer(fb, name, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads, max_queue=cfg.max_queue)
            if any(other.model_id == layer.model_id for other in layers):
                layer.model_id = f"{layer.model_id}@{name}"
            layers.append(layer)
    except BaseException:
        for layer in layers:
            layer.close()
        raise
    metrics = Metrics()
    for layer in layers:
        metrics.track_queue(layer.name, functools.partial(getattr, layer.worker, "waiting"))
    request_log = RequestLog(cfg.resolved_log_path(), int(cfg.log_max_mb * 1024 * 1024), cfg.log_keep,
                             cfg.log_inputs)
    return Server(cfg, layers, by_name, request_log, metrics, KeyCheck(cfg.api_keys), RateLimiter(cfg.rate_limit),
                  package)

"""`honed serve`: an OpenAI-compatible endpoint in front of the shipped model, with the task route's cascade.

    serve(config)      run the server until interrupted (uvicorn, one process, one event loop)
    build_app(config)  the ASGI app, for tests and for embedding in another ASGI server

Routes: POST /v1/chat/completions (also `model="task:NAME"`), POST /v1/tasks/{task}, GET /v1/models,
GET /health, GET /metrics. See `honed.serve.app` for the request path and `honed.serve.cascade` for how an
answer is validated, scored and escalated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from honed.serve.config import ServeConfig

if TYPE_CHECKING:
    from starlette.applications import Starlette


def build_app(config: ServeConfig) -> Starlette:
    """Open the models and tasks of `config` and return the ASGI app."""
    from honed.serve.app import build_app as _build

    return _build(config)


def serve(config: ServeConfig, on_ready: object = None) -> None:
    """Serve `config` on its host and port until interrupted."""
    import uvicorn

    app = build_app(config)
    if callable(on_ready):
        on_ready(app)
    # One process: in-process models are loaded once and shared by all requests through their worker queues.
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)


__all__ = ["ServeConfig", "build_app", "serve"]

"""Backends, registered by name. Each is imported only when asked for, so `honed --help` stays instant."""

from __future__ import annotations

import importlib
from typing import Any

from honed.backends.base import Backend
from honed.errors import UserError

_REGISTRY: dict[str, str] = {
    "llamacpp": "honed.backends.llamacpp:LlamaCppBackend",
    "openai": "honed.backends.openai:OpenAIBackend",
    "ollama": "honed.backends.ollama:OllamaBackend",
    "transformers": "honed.backends.transformers:TransformersBackend",
    "scripted": "honed.backends.scripted:ScriptedBackend",
}


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def open_backend(name: str, model: str, **options: Any) -> Backend:
    """Open `model` with the backend called `name` (options are the backend's keyword arguments)."""
    target = _REGISTRY.get(name)
    if target is None:
        raise UserError(f"unknown backend {name!r}: expected one of {', '.join(backend_names())}")
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(model, **options)


__all__ = ["Backend", "backend_names", "open_backend"]

"""`honed serve`: the OpenAI-compatible endpoint and the task route with its cascade."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

out = Console()


def serve_command(
    target: Annotated[str, typer.Argument(help="Package folder (from `honed export`), model alias, .gguf, or "
                                          "openai:URL#model / ollama:URL#model.")],
    host: Annotated[str, typer.Option(help="Interface to bind; anything but loopback needs --api-key.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8080,
    tasks: Annotated[list[Path] | None, typer.Option("--task", help="Task folder served at /v1/tasks/NAME "
                                                       "(repeatable).")] = None,
    fallbacks: Annotated[list[str] | None, typer.Option("--fallback", help="Cascade layer after the primary: "
                                                          "alias, .gguf, openai:URL#model (repeatable, in order).")]
    = None,
    quant: Annotated[str | None, typer.Option(help="Package rung to serve (default: recommended).")] = None,
    log_path: Annotated[Path | None, typer.Option("--log", help="Request log (JSONL; default "
                                                "$HONED_HOME/serve/requests.jsonl).")] = None,
    log_max_mb: Annotated[float, typer.Option(min=0.001, help="Rotate the log past this size.")] = 64.0,
    log_keep: Annotated[int, typer.Option(min=1, help="Rotated logs to keep (.1 … .N).")] = 5,
    log_inputs: Annotated[str, typer.Option(help="What the log keeps of each input: full | hash | none "
                                            "(harvest and monitor need full).")] = "full",
    api_keys: Annotated[list[str] | None, typer.Option("--api-key", help="Accepted API key (repeatable; visible in "
                                                         "`ps`: prefer --api-key-file or HONED_API_KEYS).")] = None,
    api_key_file: Annotated[Path | None, typer.Option(help="File of accepted API keys, one per line.")] = None,
    allow_origins: Annotated[list[str] | None, typer.Option("--allow-origin", help="Browser origin allowed to call "
                                                              "the server, e.g. http://localhost:3000 (repeatable)."
                                                              )] = None,
    allow_hosts: Annotated[list[str] | None, typer.Option("--allow-host", help="Host header NAME:PORT to answer "
                                                            "besides the bound address (repeatable).")] = None,
    rate_limit: Annotated[float, typer.Option(min=0, help="Requests per minute per key; 0: off.")] = 600.0,
    max_body_kb: Annotated[int, typer.Option(min=1, help="Largest request body (413 above).")] = 256,
    timeout_s: Annotated[float, typer.Option("--timeout", min=0.1, help="Per-request time limit in seconds (504).")] = 60.0,
    confidence: Annotated[str, typer.Option(help="margin | consistency | none")] = "margin",
    min_margin: Annotated[float, typer.Option("--margin", help="Escalate below this p(answer) − p(next best); > 1 escalates all.")]
    = 0.2,
    samples: Annotated[int, typer.Option(min=2, help="Samples for --confidence consistency.")] = 5,
    min_agreement: Annotated[float, typer.Option(min=0, max=1, help="Escalate below this sample agreement.")] = 0.6,
    constrained: Annotated[bool | None, typer.Option("--constrained/--free", help="Constrain task answers to the "
                                                     "answer space (default: as the task says).")] = None,
    n_threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads per in-process model.")] = None,
) -> None:
    """Serve a model: OpenAI-compatible chat, /v1/tasks/NAME with validation and a cascade, a request log.

    Each parameter is the `ServeConfig` field of its name (the flags keep their short spellings)."""
    from honed.errors import UserError
    from honed.serve import ServeConfig, serve

    if confidence not in ("margin", "consistency", "none"):
        raise UserError(f"--confidence {confidence!r}: expected margin, consistency or none")
    if log_inputs not in ("full", "hash", "none"):
        raise UserError(f"--log-inputs {log_inputs!r}: expected full, hash or none")
    mode: Literal["margin", "consistency", "none"] = confidence  # type: ignore[assignment]
    kept: Literal["full", "hash", "none"] = log_inputs  # type: ignore[assignment]
    from pydantic import ValidationError

    from honed.task.spec import format_validation_errors

    try:
        cfg = ServeConfig(target=target, host=host, port=port, tasks=tasks or [], fallbacks=fallbacks or [],
                          quant=quant, log_path=log_path, log_max_mb=log_max_mb, log_keep=log_keep,
                          log_inputs=kept, api_keys=api_keys or [], api_key_file=api_key_file,
                          allow_origins=allow_origins or [], allow_hosts=allow_hosts or [], rate_limit=rate_limit,
                          max_body_kb=max_body_kb, timeout_s=timeout_s, confidence=mode, min_margin=min_margin,
                          samples=samples, min_agreement=min_agreement, constrained=constrained,
                          n_threads=n_threads)
    except ValidationError as exc:  # e.g. --margin 5: one line naming the option, not a pydantic traceback
        raise UserError(format_validation_errors("honed serve", exc, "invalid option")) from None

    def ready(app: Any) -> None:
        server = app.state.server
        url = f"http://{host}:{port}"
        out.print(f"[bold]honed serve[/] on {url}/v1  (health: {url}/health, metrics: {url}/metrics)",
                  highlight=False)
        for layer in server.layers:
            out.print(f"  {layer.name}: {layer.model_id}  sha256 {str(layer.sha256)[:12]}", highlight=False)
        for name in server.tasks:
            out.print(f"  task: POST {url}/v1/tasks/{name}  (or model='task:{name}')", highlight=False)
        out.print(f"  log: {server.log.path} (inputs: {cfg.log_inputs})  auth: "
                  f"{'API key' if server.keys.required else 'off (loopback)'}", highlight=False)
        if api_keys:
            out.print("  note: keys given with --api-key show in `ps`; --api-key-file or HONED_API_KEYS do not",
                      highlight=False)

    serve(cfg, on_ready=ready)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)

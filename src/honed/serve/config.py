"""`ServeConfig`: every setting of `honed serve`, typed, with a docstring per field (the CLI's help text)."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from honed.errors import UserError

log = logging.getLogger("honed")
LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server reachable from this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_key_file(path: Path) -> list[str]:
    """API keys from a file, one per line; blank lines and lines starting with # are skipped."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--api-key-file {path}: cannot read it ({exc.strerror or exc})") from None
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise UserError(f"--api-key-file {path}: no keys in it (one key per line)")
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; `chmod 600 %s` keeps the API keys private", path, path)
    return keys


class ServeConfig(BaseModel):
    """What `honed serve` serves, where, and how it protects itself."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    target: str
    """A delivery package folder (from `honed export`), a model alias, a .gguf path, or an upstream server as
    `openai:URL#model` / `ollama:URL#model`."""
    host: str = "127.0.0.1"
    """Interface to bind. Anything but loopback requires API keys."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port (0: any free port)."""
    tasks: list[Path] = []
    """Task folders (honed.toml) served at /v1/tasks/{name}, besides a package's own task."""
    fallbacks: list[str] = []
    """Cascade layers after the primary, in order: alias, .gguf, `openai:URL#model` or `ollama:URL#model`."""
    quant: str | None = None
    """Package rung to serve (default: the manifest's recommended one)."""
    log_path: Path | None = None
    """Request log (JSONL). Default: $HONED_HOME/serve/requests.jsonl."""
    log_max_mb: float = Field(default=64.0, gt=0)
    """Rotate the log past this size: requests.jsonl → .1 → .2 …, whole lines only."""
    log_keep: int = Field(default=5, ge=1)
    """Rotated logs to keep."""
    log_inputs: Literal["full", "hash", "none"] = "full"
    """What the request log keeps of each input: full (the input and its hash; what `honed data harvest` and
    `honed monitor` read), hash (only the input hash), none (neither). Outputs and answers are always kept."""
    api_keys: list[str] = []
    """Accepted API keys (Bearer). Also read from `api_key_file` and HONED_API_KEYS (comma-separated). None: no
    auth (loopback only)."""
    api_key_file: Path | None = None
    """A file of accepted API keys, one per line (blank lines and # comments skipped): keeps keys out of `ps`."""
    allow_origins: list[str] = []
    """Browser origins (e.g. http://localhost:3000) allowed to call the server; others get 403."""
    allow_hosts: list[str] = []
    """Host header values (NAME:PORT) the server answers to besides its bound address and loopback names."""
    rate_limit: float = Field(default=600.0, ge=0)
    """Requests per minute per API key (per client address without keys); 0 turns it off."""
    max_body_kb: int = Field(default=256, gt=0)
    """Largest request body accepted (413 above)."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Per-request time limit, queueing included (504 past it)."""
    max_queue: int = Field(default=64, ge=1)
    """Requests waiting for one model before new ones get 503."""
    constrained: bool | None = None
    """Task route: constrain decoding to the task's answer space (labels, numbers, JSON schema). Unset: as the task
    says (`[generation] constrained`), which is how its gate and export decoded, so the package's anchors are
    answered the same way here."""
    confidence: Literal["margin", "consistency", "none"] = "margin"
    """Task route confidence signal. margin: classify/pick only, from each allowed answer's log-probability
    (in-process models); consistency: agreement of `samples` sampled answers with the greedy one (any kind)."""
    min_margin: float = Field(default=0.2, ge=-1.0, le=2.0)
    """Escalate when p(answer) − p(best other answer) is below this (a value above 1 escalates every request)."""
    samples: int = Field(default=5, ge=2)
    """Sampled answers for the consistency signal."""
    sample_temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    """Temperature of those samples."""
    min_agreement: float = Field(default=0.6, ge=0.0, le=1.0)
    """Escalate when fewer than this share of the samples agree with the greedy answer."""
    n_ctx: int = Field(default=4096, ge=256)
    """Context length of in-process models."""
    n_threads: int | None = Field(default=None, ge=1)
    """CPU threads per in-process model (default: up to 8)."""
    chat_max_tokens: int = Field(default=512, ge=1)
    """Chat route: token budget when the request gives none, and the most a request may ask for."""

    @model_validator(mode="after")
    def _keys_from_file_and_env(self) -> ServeConfig:
        env = [k.strip() for k in os.environ.get("HONED_API_KEYS", "").split(",") if k.strip()]
        from_file = read_key_file(self.api_key_file) if self.api_key_file else []
        self.api_keys = list(dict.fromkeys([*self.api_keys, *from_file, *env]))
        return self

    def check_exposure(self) -> None:
        """Refuse to listen beyond this machine without API keys."""
        if not is_loopback(self.host) and not self.api_keys:
            raise UserError(f"refusing to bind {self.host}: it is reachable from other machines and no API key is "
                            "set; give --api-key-file FILE, HONED_API_KEYS or --api-key KEY, or bind 127.0.0.1")

    def resolved_log_path(self) -> Path:
        from honed.store import honed_home

        return self.log_path or honed_home() / "serve" / "requests.jsonl"

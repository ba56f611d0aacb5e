"""Who may talk to the server: the Host a request names, the Origin a browser adds, the body's content type.

A server on loopback is still reachable from any web page the user opens: the page can POST `text/plain`
(no preflight) to 127.0.0.1, and with DNS rebinding (evil.example resolving to 127.0.0.1) it can read the
answer too. Three checks close that, on every route, before auth, the body or the log:

- **Host** must name the bound address: `127.0.0.1`, `localhost` or `[::1]` with the bound port, or the bound
  host itself, or a name given with `--allow-host`. A rebinding page sends `Host: evil.example:PORT`: 403.
  Bound to a wildcard (0.0.0.0, ::) the server cannot know its public names: the check is off unless
  `--allow-host` lists them (API keys are required there anyway, and a page cannot send them cross-origin).
- **Origin**, when present (browsers add it; the openai client, curl and httpx do not), must be the server's
  own (http or https on an allowed host) or listed with `--allow-origin`: 403 otherwise.
- **Content-Type** of a POST must be `application/json`: a page can send text/plain or form bodies without
  asking (CORS's "simple requests"), never JSON. 415 otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _bracketed(host: str) -> str:
    """An IPv6 address as it appears in a Host header ([::1]); names and IPv4 unchanged, lower-cased."""
    host = host.strip().lower()
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host


def is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def normalize_origin(origin: str) -> str:
    """`HTTP://Example.com:3000/` → `http://example.com:3000`, as browsers send it."""
    return origin.strip().rstrip("/").lower()


def allowed_hosts(bound_host: str, port: int, extra: list[str]) -> set[str] | None:
    """The Host header values this server answers to; None when it cannot know (wildcard bind, no `extra`)."""
    if is_wildcard(bound_host) and not extra:
        return None
    names = {*LOOPBACK_HOSTS} | ({_bracketed(bound_host)} if not is_wildcard(bound_host) else set())
    hosts = {f"{n}:{port}" for n in names}
    if port == 80:  # a browser leaves the default port out
        hosts |= names
    return hosts | {_bracketed(h) for h in extra}


def refusal(headers: Mapping[str, str], bound_host: str, port: int, allow_hosts: list[str],
            allow_origins: list[str]) -> str | None:
    """Why a request must be refused (403), or None. Messages name the option that would allow it."""
    hosts = allowed_hosts(bound_host, port, allow_hosts)
    host = headers.get("host", "").strip().lower()
    if hosts is not None and host not in hosts:
        return (f"Host {host[:100]!r} is not this server's address; to serve under that name, start honed serve "
                "with --allow-host NAME:PORT")
    origin = headers.get("origin")
    if origin is None:
        return None
    origin = normalize_origin(origin)
    if origin in {normalize_origin(o) for o in allow_origins}:
        return None
    scheme, sep, authority = origin.partition("://")
    if hosts is not None and sep and scheme in ("http", "https") and authority in hosts:
        return None
    return (f"cross-origin request from {origin[:100]!r} refused; to allow a web page there, start honed serve with "
            "--allow-origin ORIGIN")


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type header says JSON (`application/json`, any parameters)."""
    return (content_type or "").split(";")[0].strip().lower() == "application/json"

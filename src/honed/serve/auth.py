"""API keys and per-key rate limits.

Keys are compared in constant time. Without keys (loopback only), the rate limit applies per client address.
Failed key checks are limited per client address too: once an address has spent its budget on wrong keys, its
requests get 429 before any key is compared, so keys cannot be guessed faster than the rate limit.
The limiter is a token bucket: `rate_limit` requests per minute, bursts up to the same number; a refused
request learns how many seconds until it would pass (the Retry-After header).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class AuthError(Exception):
    """Missing or unknown API key."""


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class KeyCheck:
    """Which API keys are accepted; an empty set means auth is off."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def identity(self, authorization: str | None, x_api_key: str | None, client: str) -> str:
        """The caller's identity for rate limiting: a short hash of its key, or its address when auth is off.

        Raises AuthError with what to send when a key is required and missing or unknown.
        """
        if not self.required:
            return f"addr:{client}"
        token = bearer(authorization) or x_api_key
        if not token:
            raise AuthError("missing API key: send the header 'Authorization: Bearer KEY'")
        given = token.encode()
        if not any(hmac.compare_digest(given, k) for k in self._keys):
            raise AuthError("invalid API key")
        return "key:" + hashlib.sha256(given).hexdigest()[:12]


MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets per identity: `per_minute` requests a minute; 0 turns limiting off."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, identity: str, take: bool = True) -> float:
        """0.0 when the request may pass (and takes a token unless `take` is False), else the seconds to wait
        before retrying."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        now = self._clock()
        with self._lock:
            b = self._buckets.get(identity)
            if b is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._forget_full(now, rate)
                b = self._buckets[identity] = _Bucket(self.per_minute, now)
            b.tokens = min(self.per_minute, b.tokens + (now - b.stamp) * rate)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= take
                return 0.0
            return max(1.0, math.ceil((1.0 - b.tokens) / rate))

    def _forget_full(self, now: float, rate: float) -> None:
        """Drop the buckets that have refilled: a new one would be the same (many addresses cost no memory)."""
        self._buckets = {k: b for k, b in self._buckets.items()
                         if b.tokens + (now - b.stamp) * rate < self.per_minute}

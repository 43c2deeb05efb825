"""Token-bucket rate limits per principal.

Each principal has a bucket that holds up to `burst` tokens and refills at `rate` tokens per
second; a call takes one token. An empty bucket raises `RateLimited` with `retry_after`, the
seconds until a token is back. Which limit a principal gets, most specific first:

1. a limit configured for its id (`per_principal`),
2. the most generous limit among its scopes (`per_scope`, e.g. `{"tool:*": Limit(50, 100)}`),
3. the default (`default`; None = unlimited).

An optional `global_limit` bucket is shared by everyone and protects the server as a whole: a
call needs a token from both buckets, and a refusal takes from neither.

A principal can have several buckets with the same limit, one per `channel`: tool calls use the
default channel and protocol requests (initialize, tools/list, ...) another, so both are limited
and neither uses up the other.

One lock guards the buckets; `acquire` never blocks or sleeps, so it is safe to call from threads
and from async code alike.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from aesoperator.errors import ConfigError, RateLimited


@dataclass(frozen=True)
class Limit:
    """`rate` tokens per second, at most `burst` at once."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ConfigError(f"rate limit: rate must be a positive number per second, got {self.rate!r}")
        if not (self.burst >= 1 and math.isfinite(self.burst)):
            raise ConfigError(f"rate limit: burst must be at least 1, got {self.burst!r}")

    @classmethod
    def parse(cls, text: str) -> Limit:
        """`10/s`, `600/min`, `5/s:20` (burst 20), `2.5` (per second). Without `:BURST` the burst
        is one second's worth of calls (at least 1)."""
        match = _LIMIT_RE.match(text.strip().lower())
        if not match:
            raise ConfigError(f"rate limit {text!r}: write N/s, N/min or N/h, optionally :BURST (e.g. 10/s:20)")
        amount = float(match.group(1))
        per = _PERIODS[match.group(2) or "s"]
        if amount <= 0:
            raise ConfigError(f"rate limit {text!r}: the rate must be positive")
        rate = amount / per
        burst = float(match.group(3)) if match.group(3) else max(1.0, rate)
        return cls(rate=rate, burst=burst)

    def __str__(self) -> str:
        return f"{self.rate:g}/s, burst {self.burst:g}"


_LIMIT_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*(?::\s*(\d+(?:\.\d+)?))?$")
_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


CALLS = "calls"


def _bucket_key(principal_id: str, channel: str) -> str:
    return principal_id if channel == CALLS else f"{channel}\x00{principal_id}"


class _Bucket:
    __slots__ = ("limit", "stamp", "tokens")

    def __init__(self, limit: Limit, now: float) -> None:
        self.limit = limit
        self.tokens = limit.burst
        self.stamp = now

    def refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.limit.burst, self.tokens + elapsed * self.limit.rate)
        self.stamp = max(self.stamp, now)

    def wait(self, cost: float) -> float:
        """Seconds until `cost` tokens are available (0 when they are now)."""
        missing = cost - self.tokens
        return 0.0 if missing <= 1e-9 else missing / self.limit.rate

    def full_at(self) -> float:
        return self.stamp + (self.limit.burst - self.tokens) / self.limit.rate


class RateLimiter:
    """Token buckets per principal plus an optional global bucket (see the module docstring).

    `clock` returns seconds (monotonic); tests inject a fake one. At most `max_buckets` principals
    are tracked: idle buckets that have refilled completely are dropped first (a new bucket starts
    full, so dropping a full one changes nothing)."""

    def __init__(
        self,
        default: Limit | None = None,
        *,
        per_principal: Mapping[str, Limit] | None = None,
        per_scope: Mapping[str, Limit] | None = None,
        global_limit: Limit | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 10_000,
    ) -> None:
        self.default = default
        self.per_principal = dict(per_principal or {})
        self.per_scope = dict(per_scope or {})
        self.global_limit = global_limit
        self._clock = clock
        self._max_buckets = max(1, max_buckets)
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._global = _Bucket(global_limit, clock()) if global_limit else None

    def limit_for(self, principal_id: str, scopes: Iterable[str] = ()) -> Limit | None:
        """The limit that applies to this principal (None = unlimited)."""
        if principal_id in self.per_principal:
            return self.per_principal[principal_id]
        matching = [self.per_scope[s] for s in scopes if s in self.per_scope]
        if matching:
            return max(matching, key=lambda limit: (limit.rate, limit.burst))
        return self.default

    def acquire(
        self, principal_id: str, *, scopes: Iterable[str] = (), cost: float = 1.0, channel: str = CALLS
    ) -> None:
        """Take `cost` tokens from `principal_id`'s bucket for `channel`, or raise RateLimited
        (taking nothing)."""
        limit = self.limit_for(principal_id, scopes)
        with self._lock:
            now = self._clock()
            bucket = self._bucket(_bucket_key(principal_id, channel), limit, now) if limit is not None else None
            waits: list[tuple[float, str]] = []
            for which, b in (("principal", bucket), ("server", self._global)):
                if b is None:
                    continue
                b.refill(now)
                if cost > b.limit.burst:
                    raise RateLimited(
                        f"a call costing {cost:g} exceeds the burst of {b.limit.burst:g}", retry_after=math.inf
                    )
                wait = b.wait(cost)
                if wait > 0:
                    waits.append((wait, which))
            if waits:
                wait, which = max(waits)
                requests = "" if channel == CALLS else f" ({channel})"
                scope = f"for {principal_id!r}{requests}" if which == "principal" else "for this server (all clients)"
                applied = bucket.limit if which == "principal" and bucket else self.global_limit
                raise RateLimited(f"rate limit of {applied} exceeded {scope}", retry_after=wait)
            for b in (bucket, self._global):
                if b is not None:
                    b.tokens -= cost

    def _bucket(self, key: str, limit: Limit, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_buckets:
                self._prune(now, room_for=1)
            bucket = self._buckets[key] = _Bucket(limit, now)
        elif bucket.limit != limit:
            bucket = self._buckets[key] = self._rebucket(bucket, limit, now)
        self._buckets.move_to_end(key)
        return bucket

    @staticmethod
    def _rebucket(old: _Bucket, limit: Limit, now: float) -> _Bucket:
        """A changed limit keeps what was used, capped at the new burst."""
        old.refill(now)
        bucket = _Bucket(limit, now)
        bucket.tokens = min(limit.burst, old.tokens)
        return bucket

    def _prune(self, now: float, room_for: int) -> None:
        for key in [k for k, b in self._buckets.items() if b.full_at() <= now]:
            del self._buckets[key]
        while self._buckets and len(self._buckets) + room_for > self._max_buckets:
            self._buckets.popitem(last=False)  # all busy: drop the least recently used

    def tokens_left(self, principal_id: str, channel: str = CALLS) -> float | None:
        """Tokens in the principal's bucket now (None if it has none yet); for tests and status."""
        with self._lock:
            bucket = self._buckets.get(_bucket_key(principal_id, channel))
            if bucket is None:
                return None
            bucket.refill(self._clock())
            return bucket.tokens

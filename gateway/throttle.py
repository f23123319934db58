"""Throttles kept in this process's memory: failed authentication per source and per client, and
(optionally) how fast each client may send tasks. Over a limit the caller answers 429 with
Retry-After; the windows are those of the limits package (fixed windows)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter


class Throttle:
    """One rate per key (e.g. per source address): how long a key must wait, and counting its hits."""

    def __init__(self, rate: str | None, scope: str):
        self.rate: RateLimitItem | None = parse(rate) if rate else None
        self._limiter = FixedWindowRateLimiter(MemoryStorage())
        self._scope = scope

    def wait_seconds(self, key: str) -> int | None:
        """Seconds until key may go on, or None if it is within its rate now."""
        if self.rate is None or self._limiter.test(self.rate, self._scope, key):
            return None
        return self._until_reset(key)

    def hit(self, key: str) -> None:
        if self.rate is not None:
            self._limiter.hit(self.rate, self._scope, key)

    def take(self, key: str) -> int | None:
        """Count one for key; seconds to wait if that was over its rate (and so not counted)."""
        if self.rate is None or self._limiter.hit(self.rate, self._scope, key):
            return None
        return self._until_reset(key)

    def _until_reset(self, key: str) -> int:
        reset_at = self._limiter.get_window_stats(self.rate, self._scope, key).reset_time
        return max(1, math.ceil(reset_at - time.time()))


class AuthFailures:
    """Failed authentication counted per source address and per client id: once either is over
    its rate, until its window ends, a wrong attempt is answered 429 (console sign-ins: every
    attempt, right or wrong; a client's right signature or token still goes)."""

    def __init__(self, per_source: str, per_client: str):
        self.by_source = Throttle(per_source, "auth-source")
        self.by_client = Throttle(per_client, "auth-client")

    def wait_seconds(self, source: str | None, client_id: str | None = None) -> int | None:
        waits = [self.by_source.wait_seconds(source or "-")]
        if client_id:
            waits.append(self.by_client.wait_seconds(client_id))
        return max((wait for wait in waits if wait is not None), default=None)

    def failed(self, source: str | None, client_id: str | None = None) -> None:
        self.by_source.hit(source or "-")
        if client_id:
            self.by_client.hit(client_id)

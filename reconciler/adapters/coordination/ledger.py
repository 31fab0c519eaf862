"""The 403 ledger: reports per GUID per minute, so the persistence rule can count a window.

The report script (``lua/report.lua``) writes it: one INCR and one EXPIRE on the minute's bucket,
whose lifetime this module hands it (``bucket_lifetime``). Reading is one MGET over the window's
buckets. Granularity is a minute: ``since`` drops buckets that ended before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.client import CoordinationClient

BUCKET_SECONDS = 60


def bucket(now: float) -> int:
    return int(now // BUCKET_SECONDS)


def bucket_lifetime(window_seconds: int) -> int:
    """A bucket must outlive the window it may still be counted in."""
    return window_seconds + BUCKET_SECONDS


class ForbiddenLedger:
    def __init__(self, redis: CoordinationClient, *, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.window_seconds = window_seconds
        self.clock = clock

    def buckets(self, guid: str, *, since: float | None = None) -> list[str]:
        """The buckets a count sums: the window's, less those that ended before ``since``."""
        now = self.clock()
        start = now - self.window_seconds
        if since is not None:
            start = max(start, since)
        return [keys.forbidden_bucket(guid, minute) for minute in range(bucket(start), bucket(now) + 1)]

    def count(self, guid: str, *, since: float | None = None) -> int:
        buckets = self.buckets(guid, since=since)
        return sum(int(value) for value in self.redis.mget(buckets) if value is not None)

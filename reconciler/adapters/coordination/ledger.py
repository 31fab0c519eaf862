"""The 403 ledger: reports per GUID per minute, so the persistence rule can count a window.

Writing is one INCR and one EXPIRE (the hook's Lua script does it); reading is one MGET over the
window's minute buckets. Granularity is a minute: ``since`` drops buckets that ended before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reconciler.adapters.coordination import keys

BUCKET_SECONDS = 60


class ForbiddenLedger:
    def __init__(self, redis, *, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.window_seconds = window_seconds
        self.clock = clock

    def record(self, guid: str, n: int = 1) -> None:
        key = keys.forbidden_bucket(guid, int(self.clock() // BUCKET_SECONDS))
        pipe = self.redis.pipeline(transaction=False)
        pipe.incrby(key, n)
        pipe.expire(key, self.window_seconds + BUCKET_SECONDS)
        pipe.execute()

    def count(self, guid: str, *, since: float | None = None) -> int:
        now = self.clock()
        start = now - self.window_seconds
        if since is not None:
            start = max(start, since)
        first = int(start // BUCKET_SECONDS)
        last = int(now // BUCKET_SECONDS)
        bucket_keys = [keys.forbidden_bucket(guid, minute) for minute in range(first, last + 1)]
        return sum(int(value) for value in self.redis.mget(bucket_keys) if value is not None)

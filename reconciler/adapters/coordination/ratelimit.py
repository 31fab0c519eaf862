"""One rate limit for every Halo call of every worker: a GCRA token bucket in Redis.

GCRA keeps one timestamp per bucket (the "theoretical arrival time"). The Lua script reads the
server's clock (``TIME``), so workers on hosts with skewed clocks share one schedule. ``burst``
calls may go back to back after a quiet spell; beyond that calls are spaced ``1/rate`` apart. The
default burst of 1 keeps every one-second window within the limit plus one call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reconciler.adapters.coordination import keys, scripts


class RateLimiter:
    def __init__(self, redis, *, name: str, rate_per_second: float, burst: int = 1,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self.key = keys.ratelimit(name)
        self.interval_us = int(1_000_000 / rate_per_second)
        self.tolerance_us = self.interval_us * max(burst - 1, 0)
        self.sleep = sleep
        self.clock = clock
        self._script = scripts.registered(redis, "gcra")

    def try_acquire(self) -> float:
        """0 if a call may go now, else the seconds to wait."""
        wait_us = int(self._script(keys=[self.key], args=[self.interval_us, self.tolerance_us]))
        return wait_us / 1_000_000

    def acquire(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return True
            if deadline is not None and self.clock() + wait > deadline:
                return False
            self.sleep(wait)

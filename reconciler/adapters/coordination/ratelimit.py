"""One rate limit for every Halo call of every worker: a GCRA token bucket in Redis.

GCRA keeps one timestamp per bucket (the "theoretical arrival time"). The Lua script reads the
server's clock (``TIME``), so workers on hosts with skewed clocks share one schedule. ``burst``
calls may go back to back after a quiet spell; beyond that calls are spaced ``1/rate`` apart. The
default burst of 1 keeps every one-second window within the limit plus one call.

A token may come with another round trip: a run's claim takes the token for its first Halo call
(``lua/run_begin.lua``) and ``credit`` holds it for this thread, so that call's ``acquire`` spends
no round trip of its own. The run drops a credit it did not spend when it finishes (``forfeit``),
so a token is never carried to a later call: each is spent moments after it was granted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from reconciler.adapters.coordination import keys, scripts

# Tokens granted by another round trip and not spent yet, per thread and bucket key.
_credits = threading.local()


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
        if getattr(_credits, self.key, False):  # granted with this thread's run's claim
            setattr(_credits, self.key, False)
            return True
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            wait = self.try_acquire()
            if wait <= 0:
                return True
            if deadline is not None and self.clock() + wait > deadline:
                return False
            self.sleep(wait)

    def credit(self, wait_us: int) -> None:
        """Another round trip ran this bucket's ``gcra.lua`` and answered ``wait_us``: a 0 is a token
        for this thread's next ``acquire``; any other answer grants nothing (that call waits as usual)."""
        setattr(_credits, self.key, wait_us == 0)

    def forfeit(self) -> None:
        """Drop this thread's unspent token (a run that asked Halo nothing: the token stays used)."""
        setattr(_credits, self.key, False)

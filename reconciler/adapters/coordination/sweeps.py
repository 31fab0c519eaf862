"""Which sweep runs: one per beat interval (two beats claim the same slot; one wins) and one at a
time (a long sweep and a manual one never overlap: redis-py's ``Lock``, released by its token)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime

from redis.exceptions import LockError

from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.client import CoordinationClient

LOCK_SECONDS = 600  # a crashed sweep blocks the next for at most this long


class SweepCoordinator:
    def __init__(self, redis: CoordinationClient, *, interval_seconds: int) -> None:
        self.redis = redis
        self.interval_seconds = interval_seconds

    def claim_interval(self, now: datetime) -> bool:
        """True for the first beat to ask in this interval."""
        slot = int(now.timestamp() // self.interval_seconds)
        return bool(self.redis.set(keys.sweep_slot(slot), "1", nx=True, ex=int(self.interval_seconds * 2) + 1))

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Yields True while holding the sweep lock, False when another sweep holds it."""
        lock = self.redis.lock(keys.sweep_lock(), timeout=LOCK_SECONDS, blocking=False)
        if not lock.acquire():
            yield False
            return
        try:
            yield True
        finally:
            # Expired and perhaps taken by another sweep: theirs now, nothing of ours to free. (The lock's
            # own answer, not a failure of the store: the client's error map leaves it alone.)
            with suppress(LockError):
                lock.release()

    def mark_finished(self, now: datetime) -> None:
        self.redis.set(keys.last_sweep(), now.isoformat())

"""Riding out a coordination store that is away for a moment, inside the run that met it.

A worker's task that meets Redis away cannot hand itself back to the broker: the broker is that same
Redis (Celery's ``self.retry()`` publishes a new message, which fails, and the delivery is dropped),
and the claim it held cannot be released either. With an append-only file Redis comes back with that
claim and the practice's queued mark, and the practice waited for them to expire (about 30 minutes).
So the run waits for the store where it is, and runs again under the same token: the claim the
append-only file restored is its own (``queue_start.lua`` hands it back to the same token), the
queued mark is cleared by the claim, and the run finishes and releases both as usual. Only past the
wait's budget does the caller fall back to the broker's retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reconciler import logs
from reconciler.core import backoff
from reconciler.core.errors import CoordinationUnavailable

log = logs.get_logger()

T = TypeVar("T")

FIRST_WAIT_SECONDS = 0.5
MAX_WAIT_SECONDS = 10.0


def ride_out(call: Callable[[], T], *, budget_seconds: float, sleep: Callable[[float], None],
             monotonic: Callable[[], float]) -> T:
    """``call()``, again after a growing wait (0.5 s doubling to 10 s) each time it raises
    ``CoordinationUnavailable``, until ``budget_seconds`` have passed; then the last error is raised."""
    deadline = monotonic() + budget_seconds
    attempt = 0
    while True:
        try:
            return call()
        except CoordinationUnavailable as exc:
            left = deadline - monotonic()
            if left <= 0:
                raise
            wait = min(left, backoff.exponential(attempt, base=FIRST_WAIT_SECONDS, cap=MAX_WAIT_SECONDS))
            log.warning("coordination_waited", attempt=attempt + 1, wait_seconds=round(wait, 2), error=str(exc))
            attempt += 1
            sleep(wait)


__all__ = ["ride_out"]

"""Sweeps: re-resolve practices before their users meet a 403, and retry those whose backoff is due.

``plan`` names every practice a sweep should look at, each once (due retries first, then the never
verified and the stale), paging through the database so a sweep over 100,000 practices holds one
page of ids at a time. ``sweep_now`` reconciles them in this process; ``enqueue_planned`` queues them
through the work queue, so a practice a storm already queued is not doubled; ``scheduled_sweep`` is the
beat's whole sweep (the interval's claim, the lock, the plan, the queueing), which ``halo.sweep`` calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from models import Trigger
from reconciler import logs
from reconciler.core.breaker import Admission
from reconciler.usecases.ports import Breaker

log = logs.get_logger()


class SweepPlanSource(Protocol):
    """The three keyset queries a plan reads (``reconciler.adapters.store`` has them)."""

    def due_retry_ids(self, *, now: datetime) -> Iterator[int]: ...
    def never_verified_ids(self) -> Iterator[int]: ...
    def stale_practice_ids(self, *, cutoff: datetime) -> Iterator[int]: ...


class SweepLocks(Protocol):
    """Which beat sweeps this interval, and one sweep at a time (``coordination/sweeps.py``)."""

    def claim_interval(self, now: datetime) -> bool: ...
    def exclusive(self) -> AbstractContextManager[bool]: ...
    def mark_finished(self, now: datetime) -> None: ...


class Queue(Protocol):
    def add(self, practice_id: int) -> str | None: ...
    def confirm(self, practice_id: int, nonce: str) -> bool: ...
    def forget(self, practice_id: int, nonce: str | None = None) -> None: ...


def plan(source: SweepPlanSource, *, now: datetime, older_than: timedelta) -> Iterator[tuple[int, Trigger]]:
    retried: set[int] = set()
    for practice_id in source.due_retry_ids(now=now):
        retried.add(practice_id)
        yield practice_id, Trigger.RETRY
    for practice_id in source.never_verified_ids():
        if practice_id not in retried:
            yield practice_id, Trigger.SWEEP
    for practice_id in source.stale_practice_ids(cutoff=now - older_than):
        if practice_id not in retried:
            yield practice_id, Trigger.SWEEP


@dataclass
class SweepSummary:
    checked: int = 0
    skipped: int = 0
    verdicts: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"checked": self.checked, "verdicts": dict(sorted(self.verdicts.items())), "skipped": self.skipped}


def sweep_now(planned: list[tuple[int, Trigger]], *, reconcile: Callable[[int, Trigger], Any],
              progress: Callable[[], None] = lambda: None) -> SweepSummary:
    """Reconcile every planned practice in this process."""
    summary = SweepSummary()
    for practice_id, trigger in planned:
        result = reconcile(practice_id, trigger)
        summary.checked += 1
        if result.verdict is None:
            summary.skipped += 1
        else:
            summary.verdicts[str(result.verdict)] += 1
        progress()
    log.info("sweep_finished", checked=summary.checked, skipped=summary.skipped, verdicts=dict(summary.verdicts))
    return summary


def enqueue_planned(planned: Iterator[tuple[int, Trigger]], *, queue: Queue,
                    publish: Callable[[int, Trigger], None], breaker: Breaker | None = None,
                    now: float = 0.0) -> int:
    """Queue each planned practice that is neither queued nor running; returns how many were published.

    A publish that fails takes its queued mark back (``forget``), so the next report or sweep can
    queue the practice at once instead of folding into a task that was never sent; one the broker
    took is confirmed, so its mark waits for the claim. A sweep process killed between the two
    leaves a pending mark that expires in seconds.

    While the integrator-wide breaker is open the sweep spends nothing: every planned practice is
    kept for when it closes, except one, published as the probe once one is due.
    """
    admission = breaker.peek(now=now) if breaker is not None else Admission.ADMIT
    enqueued = kept = 0
    for practice_id, trigger in planned:
        if breaker is not None and (admission is Admission.BLOCKED or (admission is Admission.PROBE and enqueued)):
            breaker.keep(practice_id)
            kept += 1
            continue
        nonce = queue.add(practice_id)
        if not nonce:
            continue
        try:
            publish(practice_id, trigger)
        except BaseException:
            queue.forget(practice_id, nonce)
            log.warning("sweep_publish_failed", practice_id=practice_id, exc_info=True)
            raise
        queue.confirm(practice_id, nonce)
        enqueued += 1
    if kept:
        log.info("sweep_kept", kept=kept, probe=admission is Admission.PROBE and enqueued > 0)
    return enqueued


def scheduled_sweep(*, locks: SweepLocks, unit_of_work: Callable[[], AbstractContextManager[SweepPlanSource]], queue: Queue,
                    publish: Callable[[int, Trigger], None], breaker: Breaker | None, clock: Callable[[], datetime],
                    older_than: timedelta, scheduled: bool = True) -> int:
    """Plan a sweep and queue its reconciliations; returns how many were published.

    Two beats may fire it: the first to claim this interval sweeps (``scheduled``; a manual sweep
    claims none); the lock keeps a long sweep and a manual one from overlapping."""
    if scheduled and not locks.claim_interval(clock()):
        log.info("sweep_skipped", reason="this interval was swept by another beat")
        return 0
    with locks.exclusive() as held:
        if not held:
            log.info("sweep_skipped", reason="another sweep holds the lock")
            return 0
        with unit_of_work() as store:
            enqueued = enqueue_planned(plan(store, now=clock(), older_than=older_than),
                                       queue=queue, publish=publish, breaker=breaker, now=clock().timestamp())
    locks.mark_finished(clock())
    log.info("sweep_finished", enqueued=enqueued)
    return enqueued

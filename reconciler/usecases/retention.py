"""Retention: fold routine ``unchanged`` verifications older than the policy's age into daily counts.

A pass is a series of short batches, each its own unit of work and transaction (``batch_size``
rows, keyset on (started_at, id)): no batch holds its locks for longer than it takes to delete a
few thousand rows, so the workers' writes and the console's reads never queue behind it. A pass
that stops half-way (a worker killed, the database gone) leaves every finished batch folded and
the rest untouched; the next pass carries on. Running it again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler import logs
from reconciler.core.retention import RetentionPolicy
from reconciler.usecases.ports import RetentionStore

log = logs.get_logger()


@dataclass(frozen=True)
class RetentionSummary:
    cutoff: datetime
    folded: int  # rows folded (with dry_run: rows that would fold)
    batches: int
    day_rows: int  # practice-day counts written or added to
    longest_batch_ms: float
    dry_run: bool = False
    # Notification rows nobody can deliver (no notification URL configured), dropped by the same pass
    # (with dry_run: that would be): ``worker.wiring.drop_unheard_notifications``.
    outbox_dropped: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff.isoformat(), "folded": self.folded, "batches": self.batches,
                "day_rows": self.day_rows, "longest_batch_ms": round(self.longest_batch_ms, 1),
                "dry_run": self.dry_run, "outbox_dropped": self.outbox_dropped}


def apply_retention(unit_of_work: Callable[[], AbstractContextManager[RetentionStore]], *, policy: RetentionPolicy,
                    now: datetime, monotonic: Callable[[], float], dry_run: bool = False,
                    max_batches: int | None = None) -> RetentionSummary:
    """Fold every routine verification that started before ``policy.cutoff(now)``.

    ``monotonic`` times each batch (the longest is reported: it is how long a batch held its locks).
    ``max_batches`` bounds one pass (a beat that fires hourly need not finish a backlog in one go).
    """
    cutoff = policy.cutoff(now)
    if dry_run:
        with unit_of_work() as store:
            would = store.count_routine_verifications(before=cutoff)
        log.info("retention_planned", cutoff=cutoff.isoformat(), would_fold=would)
        return RetentionSummary(cutoff, would, 0, 0, 0.0, dry_run=True)
    folded = batches = day_rows = 0
    longest = 0.0
    after: tuple[datetime, int] | None = None
    while max_batches is None or batches < max_batches:
        began = monotonic()
        with unit_of_work() as store:
            batch = store.fold_routine_verifications(before=cutoff, after=after, limit=policy.batch_size)
            store.commit()
        longest = max(longest, (monotonic() - began) * 1000)
        if batch.folded == 0:
            break
        batches += 1
        folded += batch.folded
        day_rows += batch.days
        after = batch.last
        if batch.folded < policy.batch_size:  # the last, short batch: nothing older is left
            break
    summary = RetentionSummary(cutoff, folded, batches, day_rows, longest)
    log.info("retention_applied", **summary.to_json())
    return summary

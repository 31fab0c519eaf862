"""Sweeps: re-resolve practices before their users meet a 403, and retry those whose backoff is due.

Planning pages through the database with keyset queries on indexed columns, so a sweep over
100,000 practices holds one page of ids in memory at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from models import Practice, Trigger

log = structlog.get_logger()

PAGE = 1000


def stale_practice_ids(session: Session, *, cutoff: datetime, page: int = PAGE) -> Iterator[int]:
    """Practices last verified before ``cutoff``, oldest first, by keyset on (last_verified_at, id)."""
    last: tuple[datetime, int] | None = None
    while True:
        query = select(Practice.id, Practice.last_verified_at).where(col(Practice.last_verified_at) < cutoff)
        if last is not None:
            query = query.where(
                or_(col(Practice.last_verified_at) > last[0],
                    and_(col(Practice.last_verified_at) == last[0], col(Practice.id) > last[1]))
            )
        rows = session.exec(query.order_by(col(Practice.last_verified_at), col(Practice.id)).limit(page)).all()
        if not rows:
            return
        for practice_id, _ in rows:
            yield practice_id  # type: ignore[misc]
        last = (rows[-1][1], rows[-1][0])  # type: ignore[assignment]


def never_verified_ids(session: Session, *, page: int = PAGE) -> Iterator[int]:
    last_id = 0
    while True:
        rows = session.exec(
            select(Practice.id).where(col(Practice.last_verified_at).is_(None), col(Practice.id) > last_id)
            .order_by(col(Practice.id)).limit(page)
        ).all()
        if not rows:
            return
        yield from rows  # type: ignore[misc]
        last_id = rows[-1]  # type: ignore[assignment]


def due_retry_ids(session: Session, *, now: datetime, page: int = PAGE) -> Iterator[int]:
    """Practices whose backoff has run out, by keyset on (next_attempt_at, id)."""
    last: tuple[datetime, int] | None = None
    while True:
        query = select(Practice.id, Practice.next_attempt_at).where(col(Practice.next_attempt_at) <= now)
        if last is not None:
            query = query.where(
                or_(col(Practice.next_attempt_at) > last[0],
                    and_(col(Practice.next_attempt_at) == last[0], col(Practice.id) > last[1]))
            )
        rows = session.exec(query.order_by(col(Practice.next_attempt_at), col(Practice.id)).limit(page)).all()
        if not rows:
            return
        for practice_id, _ in rows:
            yield practice_id  # type: ignore[misc]
        last = (rows[-1][1], rows[-1][0])  # type: ignore[assignment]


def plan(session: Session, *, now: datetime, older_than: timedelta) -> Iterator[tuple[int, Trigger]]:
    """Every practice a sweep should look at, each once: due retries first, then stale ones."""
    retried: set[int] = set()
    for practice_id in due_retry_ids(session, now=now):
        retried.add(practice_id)
        yield practice_id, Trigger.RETRY
    for practice_id in never_verified_ids(session):
        if practice_id not in retried:
            yield practice_id, Trigger.SWEEP
    for practice_id in stale_practice_ids(session, cutoff=now - older_than):
        if practice_id not in retried:
            yield practice_id, Trigger.SWEEP


@dataclass
class SweepSummary:
    checked: int = 0
    skipped: int = 0
    verdicts: Counter = field(default_factory=Counter)

    def to_json(self) -> dict:
        return {"checked": self.checked, "verdicts": dict(sorted(self.verdicts.items())), "skipped": self.skipped}


def count_planned(session: Session, *, now: datetime, older_than: timedelta) -> int:
    return sum(1 for _ in plan(session, now=now, older_than=older_than))


def sweep_now(
    session_factory: Callable[[], Session],
    *,
    now: datetime,
    older_than: timedelta,
    reconcile: Callable[[int, Trigger], object],
    progress: Callable[[], None] = lambda: None,
) -> SweepSummary:
    """Reconcile every planned practice in this process."""
    summary = SweepSummary()
    with session_factory() as session:
        planned = list(plan(session, now=now, older_than=older_than))
    for practice_id, trigger in planned:
        result = reconcile(practice_id, trigger)
        summary.checked += 1
        verdict = getattr(result, "verdict", None)
        if verdict is None:
            summary.skipped += 1
        else:
            summary.verdicts[str(verdict)] += 1
        progress()
    log.info("sweep_finished", checked=summary.checked, skipped=summary.skipped, verdicts=dict(summary.verdicts))
    return summary


# --- the Celery adapter -------------------------------------------------------------------------

from typing import Annotated  # noqa: E402

from pydantic import Field  # noqa: E402

from worker.celery_app import app  # noqa: E402
from worker.messages import parsed_arguments  # noqa: E402


@app.task(name="halo.sweep", acks_late=True, ignore_result=True)
@parsed_arguments
def sweep_task(older_than_seconds: Annotated[int, Field(strict=True, ge=0)] | None = None,
               scheduled: Annotated[bool, Field(strict=True)] = True) -> int | None:
    """Plan a sweep and enqueue its reconciliations.

    Two beats may fire it: the first to claim this interval's slot sweeps, the other's run is
    skipped; the lock keeps a long sweep and a manual one from overlapping.
    """
    from datetime import UTC

    from tasks.reconcile import reconcile_practice
    from worker import db
    from reconciler.adapters.coordination import keys
    from worker.config import get_settings
    from worker.coordination import get_redis
    from reconciler.adapters.coordination.workqueue import WorkQueue

    settings = get_settings()
    older = timedelta(seconds=settings.sweep_stale_after_seconds if older_than_seconds is None else older_than_seconds)
    redis = get_redis()
    interval = settings.sweep_interval_seconds
    slot = int(datetime.now(UTC).timestamp() // interval)
    if scheduled and not redis.set(keys.sweep_slot(slot), "1", nx=True, ex=int(interval * 2) + 1):
        log.info("sweep_skipped", reason="this interval was swept by another beat")
        return 0
    # The lock outlives no crashed sweep for long, and is released when this one finishes.
    token = str(datetime.now(UTC).timestamp())
    if not redis.set(keys.sweep_lock(), token, nx=True, ex=600):
        log.info("sweep_skipped", reason="another sweep holds the lock")
        return 0
    enqueued = 0
    queue = WorkQueue(redis)
    try:
        db.ensure_schema()
        with db.new_session() as session:
            for practice_id, trigger in plan(session, now=datetime.now(UTC), older_than=older):
                # Through the work queue: a practice already queued or running by a storm is not doubled.
                if queue.add(practice_id):
                    reconcile_practice.apply_async(args=[practice_id, str(trigger)])
                    enqueued += 1
    finally:
        if redis.get(keys.sweep_lock()) in (token, token.encode()):
            redis.delete(keys.sweep_lock())
    redis.set(keys.last_sweep(), datetime.now(UTC).isoformat())
    log.info("sweep_finished", enqueued=enqueued)
    return enqueued

"""``halo.sweep``: plan a sweep and queue its reconciliations (beat fires it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
from pydantic import Field

from reconciler.adapters.store import SqlStore
from reconciler.usecases.sweep import enqueue_planned, plan
from tasks.reconcile import reconcile_practice
from worker import db, wiring
from worker.celery_app import app
from worker.config import get_settings
from worker.messages import parsed_arguments

log = structlog.get_logger()


@app.task(name="halo.sweep", acks_late=True, ignore_result=True)
@parsed_arguments
def sweep_task(older_than_seconds: Annotated[int, Field(strict=True, ge=0)] | None = None,
               scheduled: Annotated[bool, Field(strict=True)] = True) -> int | None:
    """Two beats may fire it: the first to claim this interval sweeps; the lock keeps a long sweep and
    a manual one from overlapping."""
    settings = get_settings()
    older = timedelta(seconds=settings.sweep_stale_after_seconds if older_than_seconds is None else older_than_seconds)
    sweeps = wiring.sweeps(settings)
    if scheduled and not sweeps.claim_interval(datetime.now(UTC)):
        log.info("sweep_skipped", reason="this interval was swept by another beat")
        return 0
    with sweeps.exclusive() as held:
        if not held:
            log.info("sweep_skipped", reason="another sweep holds the lock")
            return 0
        db.ensure_schema()
        with db.new_session() as session:
            enqueued = enqueue_planned(
                plan(SqlStore(session), now=datetime.now(UTC), older_than=older),
                queue=wiring.work_queue(settings),
                publish=lambda practice_id, trigger: reconcile_practice.apply_async(args=[practice_id, str(trigger)]),
                breaker=wiring.breaker(settings), now=datetime.now(UTC).timestamp(),
            )
    sweeps.mark_finished(datetime.now(UTC))
    log.info("sweep_finished", enqueued=enqueued)
    return enqueued

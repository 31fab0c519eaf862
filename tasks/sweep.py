"""``halo.sweep``: plan a sweep and queue its reconciliations (beat fires it; ``scheduled_sweep`` does it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import Field

from reconciler.usecases.sweep import scheduled_sweep
from tasks.reconcile import reconcile_practice
from worker import wiring
from worker.celery_app import app
from worker.config import get_settings
from worker.messages import parsed_arguments


@app.task(name="halo.sweep", acks_late=True, ignore_result=True)
@parsed_arguments
def sweep_task(older_than_seconds: Annotated[int, Field(strict=True, ge=0)] | None = None,
               scheduled: Annotated[bool, Field(strict=True)] = True) -> int | None:
    settings = get_settings()
    older = settings.sweep_stale_after_seconds if older_than_seconds is None else older_than_seconds
    return scheduled_sweep(
        locks=wiring.sweeps(settings), unit_of_work=wiring.unit_of_work, queue=wiring.work_queue(settings),
        publish=lambda practice_id, trigger: reconcile_practice.apply_async(args=[practice_id, str(trigger)]),
        breaker=wiring.breaker(settings), clock=lambda: datetime.now(UTC), older_than=timedelta(seconds=older),
        scheduled=scheduled)

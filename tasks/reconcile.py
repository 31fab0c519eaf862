"""``halo.reconcile_practice``: one reconciliation, through the work queue's claim and done."""

from __future__ import annotations

import time

import structlog
from sqlalchemy.exc import OperationalError

from models import Trigger
from reconciler.core.errors import Busy, CoordinationUnavailable
from reconciler.usecases.outage import ride_out
from reconciler.usecases.queueing import publish_follow_up
from reconciler.usecases.reconcile import reconcile
from tasks.deliver import deliver_outbox
from tasks.probe import after_run
from worker import wiring
from worker.celery_app import app
from worker.config import get_settings
from worker.messages import PracticeId, parsed_arguments


@app.task(
    bind=True,
    name="halo.reconcile_practice",
    acks_late=True,
    max_retries=30,
    # The database or the coordination store briefly away: try again with backoff rather than drop
    # the practice (the sweep would catch it, a day later). Every other outcome is a verdict.
    autoretry_for=(OperationalError, CoordinationUnavailable),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
)
@parsed_arguments
def reconcile_practice(self, practice_id: PracticeId, trigger: Trigger) -> str | None:  # noqa: ANN001
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=self.request.id, practice_id=practice_id)
    try:
        # Whatever the message says its trigger is, a queued run passes the gates (backoff, refused
        # key): only an operator's in-process run may skip them, and a broker message is not one.
        # Redis away for a moment: wait for it here rather than retry through the broker it takes with it
        # (reconciler.usecases.outage); only past the budget does autoretry ask the broker.
        result = ride_out(lambda: reconcile(practice_id, trigger=trigger, deps=wiring.reconcile_deps(),
                                            token=self.request.id),
                          budget_seconds=get_settings().coordination_wait_seconds, sleep=time.sleep,
                          monotonic=time.monotonic)
    except Busy as exc:
        # Another run holds the practice (or a crashed one's claim has not expired yet): come back when
        # it can be ours; the finished run re-queues by itself if a report is still pending.
        raise self.retry(countdown=exc.retry_in) from None
    finally:
        structlog.contextvars.clear_contextvars()
    if result.again:
        publish_follow_up(wiring.work_queue(), practice_id,
                          lambda countdown: reconcile_practice.apply_async(args=[practice_id, str(Trigger.FORBIDDEN)],
                                                                           countdown=countdown))
    if result.ticket_id is not None:
        deliver_outbox.apply_async()
    after_run(practice_id, result)  # the breaker probes by itself (reconciler.usecases.probing)
    return str(result.verdict) if result.verdict else None

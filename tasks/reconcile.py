"""``halo.reconcile_practice``: one reconciliation, then the steps after it (``after_run``).

Whether and when the task runs again is ``reconciler.usecases.reconcile.retry_in``'s answer for the
exception it raised (the one place; the task only names the database's transient error for it).
"""

from __future__ import annotations

import random
import time

import structlog
from sqlalchemy.exc import OperationalError

from models import Trigger
from reconciler.core.errors import Busy
from reconciler.usecases.outage import ride_out
from reconciler.usecases.reconcile import after_run, reconcile, retry_in
from tasks import probe
from tasks.deliver import deliver_soon
from worker import wiring
from worker.celery_app import app
from worker.config import get_settings
from worker.messages import PracticeId, parsed_arguments


@app.task(bind=True, name="halo.reconcile_practice", acks_late=True, max_retries=30)
@parsed_arguments
def reconcile_practice(self, practice_id: PracticeId, trigger: Trigger) -> str | None:  # noqa: ANN001
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=self.request.id, practice_id=practice_id)
    try:
        # Whatever the message says its trigger is, a queued run passes the gates (backoff, refused
        # key): only an operator's in-process run may skip them, and a broker message is not one.
        # Redis away for a moment: wait for it here rather than retry through the broker it takes with it
        # (reconciler.usecases.outage); only past that budget does retry_in send it back to the broker.
        result = ride_out(lambda: reconcile(practice_id, trigger=trigger, deps=wiring.reconcile_deps(),
                                            token=self.request.id),
                          budget_seconds=get_settings().coordination_wait_seconds, sleep=time.sleep,
                          monotonic=time.monotonic)
        after_run(result, queue=wiring.work_queue, deliver=deliver_soon,
                  probe=lambda finished: probe.after_run(practice_id, finished),
                  publish=lambda countdown: reconcile_practice.apply_async(
                      args=[practice_id, str(Trigger.FORBIDDEN)], countdown=countdown))
    except Exception as exc:
        countdown = retry_in(exc, retries=self.request.retries, transient=(OperationalError,), random=random.random())
        if countdown is None:
            raise
        # Busy: another run holds the practice (or a crashed one's claim has not expired yet); the
        # finished run re-queues by itself if a report is still pending. Otherwise the database or the
        # coordination store was briefly away: rather than drop the practice (the sweep would catch it,
        # a day later), come back; past max_retries the error itself is raised.
        raise self.retry(exc=None if isinstance(exc, Busy) else exc, countdown=countdown) from None
    finally:
        structlog.contextvars.clear_contextvars()
    return str(result.verdict) if result.verdict else None

"""Celery tasks for reconciliations: thin adapters over ``reconciler.usecases.reconcile`` and the work queue."""

from __future__ import annotations

import structlog
from sqlalchemy.exc import OperationalError

from models import Action, Trigger
from reconciler.usecases import reconcile as workflow
from tasks.deliver import deliver_outbox
from worker.celery_app import app
from worker.coordination import CoordinationUnavailable
from worker.messages import PracticeId, parsed_arguments

log = structlog.get_logger()


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
def reconcile_practice(self, practice_id: PracticeId, trigger: Trigger) -> str | None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=self.request.id, practice_id=practice_id)
    try:
        return _run(self, practice_id, trigger)
    finally:
        structlog.contextvars.clear_contextvars()


def _run(self, practice_id: int, trigger: Trigger) -> str | None:  # noqa: ANN001 - ``self`` is the bound task
    from tasks.events import note_verified
    from worker.config import get_settings
    from worker.coordination import get_redis
    from reconciler.adapters.coordination.workqueue import WorkQueue

    queue = WorkQueue(get_redis(), lock_seconds=get_settings().run_lock_seconds)
    claim = queue.start(practice_id, token=self.request.id)
    if claim.taken_over:
        log.warning("reconcile_redelivered")  # practice and task id are bound for every line
    if not claim.granted:
        # Another run holds the practice (or a crashed one's lock has not expired yet): come back
        # when it can be ours; the finished run re-queues by itself if a report is still pending.
        raise self.retry(countdown=claim.retry_in_ms / 1000)
    current_guid = ""
    answered: dict[str, int] = {}
    deps = workflow.Deps.from_settings()

    def on_answer(answer) -> None:
        if answer.error is None:
            # From now on this run answers any report: later ones only count (no second run).
            note_verified(queue.redis, practice_id, confirmed=False, fresh_seconds=get_settings().verified_fresh_seconds)
        # Read after the fresh mark is set: a report stamped up to this instant either folded into
        # this run (before the mark) or only counted (after it); only a later one may ask for another.
        answered.setdefault("ms", queue.now_ms())

    deps.on_answer = on_answer
    try:
        result = workflow.reconcile(practice_id, trigger=trigger, deps=deps)
        current_guid = (result.new_guid if result.action is Action.SWITCHED else result.old_guid) or ""
    finally:
        again = queue.done(claim, current_guid, answered.get("ms", 0))
    if again:
        reconcile_practice.apply_async(args=[practice_id, str(Trigger.FORBIDDEN)])
    if result.ticket_id is not None:
        deliver_outbox.apply_async()
    return str(result.verdict) if result.verdict else None

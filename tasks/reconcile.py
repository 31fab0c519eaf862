"""Celery tasks for reconciliations: thin adapters over ``tasks.workflow``."""

from __future__ import annotations

from models import Trigger
from tasks import workflow
from tasks.deliver import deliver_outbox
from worker.celery_app import app


@app.task(name="halo.reconcile_practice", acks_late=True)
def reconcile_practice(practice_id: int, trigger: str) -> str | None:
    result = workflow.reconcile(practice_id, trigger=Trigger(trigger))
    if result.ticket_id is not None:
        deliver_outbox.apply_async(queue="deliver")
    return str(result.verdict) if result.verdict else None

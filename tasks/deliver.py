"""``halo.deliver_outbox``: send pending ticket events to the webhook."""

from __future__ import annotations

from worker import wiring
from worker.celery_app import app


@app.task(name="halo.deliver_outbox", acks_late=True, ignore_result=True)
def deliver_outbox() -> int:
    report = wiring.deliver_outbox()
    return report.sent if report else 0

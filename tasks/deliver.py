"""``halo.deliver_outbox``: send pending ticket events to the webhook."""

from __future__ import annotations

from worker import wiring
from worker.celery_app import app
from worker.config import get_settings


@app.task(name="halo.deliver_outbox", acks_late=True, ignore_result=True)
def deliver_outbox() -> int:
    report = wiring.deliver_outbox()
    return report.sent if report else 0


def deliver_soon() -> None:
    """After a run that wrote events (``after_run``'s last step): publish this task now, unless the
    deployment sends events nowhere (no webhook, no notification URL), where it would send nothing and
    the publish would only cost the run. Rows written meanwhile wait for the beat's delivery, as any
    row that a run's own delivery missed does."""
    if get_settings().outbox_targets:
        deliver_outbox.apply_async()

"""``halo.apply_retention``: fold old routine verifications into daily counts (beat fires it), and drop
the notification rows nobody can deliver."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from reconciler.usecases.retention import apply_retention
from worker import wiring
from worker.celery_app import app
from worker.config import get_settings


@app.task(name="halo.apply_retention", acks_late=True, ignore_result=True)
def apply_retention_task() -> int:
    """One bounded pass (``HALO_RECONCILER_RETENTION_MAX_BATCHES``); a backlog folds over several."""
    settings = get_settings()
    wiring.drop_unheard_notifications(settings)  # rows for a target nobody sends to
    return apply_retention(wiring.unit_of_work, policy=wiring.retention_policy(settings), now=datetime.now(UTC),
                           monotonic=time.monotonic, max_batches=settings.retention_max_batches).folded

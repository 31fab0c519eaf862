"""The report path's clients, built from the settings without the rest of the worker.

``worker.hooks`` runs inside the integrator's application: what it imports must stay small and must
not include the worker's ``models`` or ``tasks`` (an application's own ``models.py`` or ``tasks.py``
would be found instead, or ours would shadow theirs). ``worker.wiring`` re-exports these two, so the
report path is still built in one place.
"""

from __future__ import annotations

from typing import Any

from reconciler.adapters.coordination.reporter import Reporter
from worker import coordination as redis_clients
from worker import publishing
from worker.config import Settings, get_settings


def reporter(*, bounded: bool = False, settings: Settings | None = None) -> Reporter:
    """The report path; ``bounded`` is the application hook's (every call within the report timeout)."""
    settings = settings or get_settings()
    return Reporter(
        redis=redis_clients.get_redis(bounded=bounded),
        publish=publisher(settings.report_timeout_seconds),
        threshold=settings.forbidden_threshold,
        window_seconds=settings.forbidden_window_seconds,
        pending_seconds=publishing.hook_bound(settings.report_timeout_seconds).mark_seconds,
        queued_seconds=settings.broker_visibility_timeout_seconds,
    )


def publisher(timeout: float):
    """Publish a task by name (no task module imported into the application) over connections whose
    every wait is bounded by ``timeout`` (``worker.publishing``): a half-open broker cannot hold it."""

    def celery_app() -> Any:
        from worker.celery_app import app  # the Celery app only when a report first needs a worker

        return app

    return publishing.bounded_publisher(timeout, celery_app)

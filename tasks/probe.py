"""``halo.probe_breaker``: the integrator-wide breaker's probe, scheduled by the worker itself
(``reconciler.usecases.probing`` says when and why)."""

from __future__ import annotations

import time

import structlog

from models import Trigger
from reconciler.core.errors import CoordinationUnavailable
from reconciler.usecases import probing
from reconciler.usecases.reconcile import ReconcileResult, after_run as run_after, reconcile
from tasks.deliver import deliver_soon
from worker import wiring
from worker.celery_app import app
from worker.messages import PracticeId, parsed_arguments

log = structlog.get_logger()


def after_run(practice_id: int, result: ReconcileResult) -> float | None:
    """After an automatic run: keep a refused run's practice and schedule the probe unless one is on its
    way; the countdown, or None. The store or broker away: the probe watch schedules it when back."""
    if not probing.needs_probe(result.verdict, result.skipped):
        return None  # almost every run: no breaker nor publisher is built for nothing to schedule
    try:
        return probing.after_run(wiring.breaker(), wiring.probe_publisher(), practice_id, verdict=result.verdict,
                                 skipped=result.skipped, now=time.time())
    except CoordinationUnavailable as exc:
        log.warning("breaker_probe_schedule_failed", practice_id=practice_id, error=str(exc))
        return None


@app.task(bind=True, name="halo.probe_breaker", acks_late=True, ignore_result=True)
@parsed_arguments
def probe_breaker(self, practice_id: PracticeId | None = None) -> str:  # noqa: ANN001
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=self.request.id)
    publish = wiring.probe_publisher()
    deps = wiring.reconcile_deps()

    def run(candidate: int) -> probing.ProbeRun:
        result = reconcile(candidate, trigger=Trigger.RETRY, deps=deps)
        # The steps after every run, as ``tasks.reconcile``'s (its task by name: that module schedules
        # this one); the probe's own rescheduling is ``run_probe``'s.
        run_after(result, queue=wiring.work_queue, deliver=deliver_soon,
                  publish=lambda countdown: app.send_task("halo.reconcile_practice",
                                                          args=[candidate, str(Trigger.FORBIDDEN)],
                                                          countdown=countdown))
        return probing.ProbeRun(verdict=result.verdict, skipped=result.skipped)

    try:
        return str(probing.run_probe(practice_id, breaker=deps.breaker, run=run,  # type: ignore[arg-type]
                                     publish=lambda countdown: publish(practice_id, countdown), now=time.time))
    finally:
        structlog.contextvars.clear_contextvars()

"""The worker's half of the report path: lookups, persistence and integrator-wide tickets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from reconciler.core.vocabulary import ForbiddenCause
from reconciler.usecases import reports
from worker import wiring
from worker.celery_app import app
from worker.config import get_settings
from worker.messages import GuidText, PracticeId, ReportMessage, parsed_arguments

IntegratorCause = Literal["ip_not_allowed", "quota_exceeded"]


@app.task(name="halo.lookup_forbidden", acks_late=True, ignore_result=True)
@parsed_arguments
def lookup_forbidden(guid: GuidText, message: ReportMessage | None) -> str:
    return str(reports.lookup_forbidden(guid, message, unit_of_work=wiring.unit_of_work, index=wiring.guid_index(),
                                        reports=wiring.reporter()))


@app.task(name="halo.note_forbidden_persists", acks_late=True, ignore_result=True)
@parsed_arguments
def note_forbidden_persists(practice_id: PracticeId) -> None:
    settings = get_settings()
    reports.note_forbidden_persists(practice_id, unit_of_work=wiring.unit_of_work,
                                    threshold=settings.forbidden_threshold,
                                    window_seconds=settings.forbidden_window_seconds, now=datetime.now(UTC))


@app.task(name="halo.note_integrator_forbidden", acks_late=True, ignore_result=True)
@parsed_arguments
def note_integrator_forbidden(cause: IntegratorCause, message: ReportMessage | None) -> None:
    reports.note_integrator_forbidden(ForbiddenCause(cause), message, unit_of_work=wiring.unit_of_work,
                                      now=datetime.now(UTC))

"""The worker's half of the report path: what a report needs that the report script cannot do.

The script (``reconciler.adapters.coordination.reporter``) runs in the application's process and
answers most reports alone. These run in a worker, published by it:

* ``lookup_forbidden``: a GUID the index does not know. Find its practice in the database, index
  every GUID it has had, and report again; or note the GUID unknown for a while.
* ``note_forbidden_persists``: 403s keep coming for a GUID Halo just confirmed: a ticket for a person.
* ``note_integrator_forbidden``: a 403 that blames the caller's IP or the quota: one integrator-wide ticket.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from reconciler.core import ticket_texts as texts
from reconciler.core.vocabulary import ForbiddenCause, ReportOutcome, TicketKind, TicketReason
from reconciler.usecases.ports import GuidIndex, Reports, UnitOfWork

log = structlog.get_logger()


def lookup_forbidden(guid: str, message: str | None, *, unit_of_work: UnitOfWork, index: GuidIndex,
                     reports: Reports) -> ReportOutcome:
    with unit_of_work() as store:
        practice = store.practice_by_guid(guid)
        if practice is None:
            reports.note_unknown(guid)
            log.info("forbidden_unknown", guid=guid)
            return ReportOutcome.UNKNOWN
        past = [row.guid for row in store.guid_history(practice.id)]  # type: ignore[arg-type]
        practice_id, current = practice.id, practice.halo_guid
    index.index(practice_id, current, past)  # type: ignore[arg-type]
    reports.lookup_done(guid)
    return reports.report(guid, message)


def note_forbidden_persists(practice_id: int, *, unit_of_work: UnitOfWork, threshold: int, window_seconds: int,
                            now: datetime) -> None:
    with unit_of_work() as store:
        store.open_ticket(kind=TicketKind.CONTACT_HALO_SUPPORT, reason=TicketReason.FORBIDDEN_PERSISTS,
                          practice_id=practice_id, now=now,
                          detail=texts.forbidden_persists_reported(threshold=threshold, window_seconds=window_seconds))
        store.commit()
    log.info("forbidden_persists_noted", practice_id=practice_id)


def note_integrator_forbidden(cause: ForbiddenCause, message: str | None, *, unit_of_work: UnitOfWork,
                              now: datetime) -> None:
    with unit_of_work() as store:
        store.open_ticket(kind=TicketKind.CONTACT_HALO_SUPPORT, reason=TicketReason(str(cause)), practice_id=None,
                          now=now, detail=texts.integrator_forbidden_reported(
                              ip_not_allowed=cause is ForbiddenCause.IP_NOT_ALLOWED, message=message))
        store.commit()

"""The admin API: what an operator can do, as plain functions.

The command line calls these, and so can ``celery -A worker shell`` or a Python prompt::

    >>> from worker import admin
    >>> admin.practice(guid="0b6c...")          # by any GUID it ever had
    >>> admin.reconcile_now(42).verdict
    >>> admin.approve(42)

Each function opens its own unit of work and returns plain output records (``PracticeOut``,
``TicketOut``, ``ReconcileResult``), never live ORM rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from models import PmsType, Practice, TicketKind, TicketStatus, Trigger
from models.practice import PracticeOut
from models.ticket import TicketOut
from reconciler.adapters import store, tickets
from reconciler.usecases import decisions as people
from worker import db
from reconciler.core.errors import BadInput, UnknownPractice
from reconciler.core.guids import parse_guid


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def unit_of_work() -> Iterator[Session]:
    db.ensure_schema()
    with db.session_scope() as session:
        yield session


def deliver_tickets() -> None:
    """Send ticket events to the webhook now; whatever fails stays in the outbox for the worker."""
    from tasks.deliver import deliver_from_settings

    deliver_from_settings()


def _out(session: Session, practice: Practice) -> PracticeOut:
    return PracticeOut.from_rows(practice, list(store.guid_history(session, practice_id=practice.id)))  # type: ignore[arg-type]


def parse_pms_type(value: str) -> PmsType:
    try:
        return PmsType(value.strip())
    except ValueError:
        names = ", ".join(t.value for t in PmsType)
        raise BadInput(f"unknown PMS type {value.strip()[:40]!r}: expected one of {names}") from None


def find_practice(
    session: Session,
    practice_id: int | None = None,
    *,
    guid: str | None = None,
    pms_type: str | None = None,
    pms_id: str | None = None,
) -> Practice:
    """Resolve the ``(ID | --guid GUID | --pms-type T --pms-id ID)`` selector."""
    given = (practice_id is not None) + (guid is not None) + (pms_type is not None or pms_id is not None)
    if given != 1:
        raise BadInput("name the practice by exactly one of: ID, --guid GUID, or --pms-type T --pms-id ID")
    if practice_id is not None:
        return store.get_practice(session, practice_id=practice_id)
    if guid is not None:
        canonical = parse_guid(guid)
        practice = store.find_practice_by_guid(session, guid=canonical)
        if practice is None:
            raise UnknownPractice(f"no practice has or had the GUID {canonical}")
        return practice
    if pms_type is None or pms_id is None:
        raise BadInput("--pms-type and --pms-id go together")
    kind = parse_pms_type(pms_type)
    practice = store.find_practice_by_pms(session, pms_type=kind, pms_id=pms_id.strip())
    if practice is None:
        raise UnknownPractice(f"no {kind} practice with PMS ID {pms_id.strip()!r}")
    return practice


# --- practices ----------------------------------------------------------------------------------


def onboard(pms_type: str, pms_id: str) -> PracticeOut:
    from reconciler.usecases.onboarding import onboard_practice, parse_request
    from worker.config import get_settings
    from worker import wiring

    settings = get_settings()
    request = parse_request(pms_type, pms_id)
    with unit_of_work() as session, wiring.build_halo_client(settings, rate_limited=True) as client:
        practice = onboard_practice(session, client, request, now=_now(), identifier_query=settings.identifier_query)
        session.commit()
        out = _out(session, practice)
    index_guids(out.id, out.halo_guid, [])
    return out


def index_guids(practice_id: int, current: str, past: list[str]) -> None:
    """Tell the coordination store which practice a GUID belongs to (best effort: the hook's lookup
    path repairs a missing entry from the database)."""
    import structlog

    from tasks.events import index_practice
    from worker.coordination import CoordinationUnavailable, get_redis

    try:
        index_practice(get_redis(), practice_id, current, past)
    except CoordinationUnavailable as exc:
        structlog.get_logger().warning("guid_index_update_failed", practice_id=practice_id, error=str(exc))


def practice(practice_id: int | None = None, **selector: Any) -> PracticeOut:
    with unit_of_work() as session:
        return _out(session, find_practice(session, practice_id, **selector))


def practices() -> list[PracticeOut]:
    with unit_of_work() as session:
        rows = list(store.iter_practices(session))
        histories = store.guid_histories(session, practice_ids=[p.id for p in rows])  # type: ignore[misc]
        return [PracticeOut.from_rows(p, histories[p.id]) for p in rows]  # type: ignore[index]


def current_guid(guid: str) -> str | None:
    """The GUID an application should use now, given any GUID the practice ever had (None if unknown)."""
    with unit_of_work() as session:
        found = store.find_practice_by_guid(session, guid=parse_guid(guid))
        return found.halo_guid if found else None


# --- reconciliation -----------------------------------------------------------------------------


def reconcile_now(practice_id: int | None = None, **selector: Any):
    """Run a reconciliation in this process, at once (backoff and a refused key do not stop it)."""
    from reconciler.usecases.reconcile import reconcile

    with unit_of_work() as session:
        target = find_practice(session, practice_id, **selector).id
    result = reconcile(target, trigger=Trigger.MANUAL)  # type: ignore[arg-type]
    deliver_tickets()
    return result


def approve(practice_id: int) -> PracticeOut:
    with unit_of_work() as session:
        row = people.approve(session, practice_id=practice_id, now=_now())
        session.commit()
        out = _out(session, row)
    index_guids(out.id, out.halo_guid, [p.guid for p in out.guid_history])
    deliver_tickets()
    return out


def reject(practice_id: int) -> PracticeOut:
    with unit_of_work() as session:
        row = people.reject(session, practice_id=practice_id, now=_now())
        session.commit()
        out = _out(session, row)
    deliver_tickets()
    return out


# --- tickets ------------------------------------------------------------------------------------


def list_tickets(status: str | None = None, kind: str | None = None) -> list[TicketOut]:
    try:
        statuses = [TicketStatus(status)] if status else list(tickets.UNRESOLVED)
        kind_ = TicketKind(kind) if kind else None
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    with unit_of_work() as session:
        return [TicketOut.from_row(t) for t in tickets.list_tickets(session, statuses=statuses, kind=kind_)]


def acknowledge_ticket(ticket_id: int) -> TicketOut:
    with unit_of_work() as session:
        row = tickets.acknowledge(session, ticket_id=ticket_id, now=_now())
        session.commit()
        out = TicketOut.from_row(row)
    deliver_tickets()
    return out


def resolve_ticket(ticket_id: int) -> TicketOut:
    with unit_of_work() as session:
        row = tickets.resolve(session, ticket_id=ticket_id, now=_now())
        session.commit()
        out = TicketOut.from_row(row)
    deliver_tickets()
    return out


# --- the mass-change guard ----------------------------------------------------------------------


def autoswitch(action: str) -> dict[str, Any]:
    if action not in {"status", "pause", "resume"}:
        raise BadInput(f"unknown autoswitch action {action!r}: expected status, pause or resume")
    with unit_of_work() as session:
        if action != "status":
            people.set_autoswitch(session, paused=action == "pause", now=_now(), reason=f"{action} by an operator")
            session.commit()
        flag = people.autoswitch_paused(session)
        return {
            "paused": flag is not None,
            "reason": flag.reason if flag else None,
            "since": flag.updated_at.isoformat() if flag else None,
        }


def enqueue_reconcile(practice_id: int | None = None, **selector: Any) -> str:
    """Queue a manual reconciliation for the worker; returns the Celery task id."""
    from tasks.reconcile import reconcile_practice
    from worker.celery_app import ensure_broker

    with unit_of_work() as session:
        target = find_practice(session, practice_id, **selector).id
    ensure_broker()
    return reconcile_practice.apply_async(args=[target, str(Trigger.MANUAL)]).id


# --- sweeps -------------------------------------------------------------------------------------


def sweep_now(older_than_seconds: int | None = None, progress_factory=None):
    """Reconcile every stale practice and every due retry in this process."""
    from datetime import timedelta

    from tasks.sweep import count_planned
    from tasks.sweep import sweep_now as run_sweep
    from reconciler.usecases.reconcile import Deps, reconcile
    from worker.config import get_settings

    settings = get_settings()
    older = timedelta(seconds=settings.sweep_stale_after_seconds if older_than_seconds is None else older_than_seconds)
    db.ensure_schema()
    deps = Deps.from_settings()
    now = _now()
    with db.new_session() as session:
        total = count_planned(session, now=now, older_than=older)
    progress = progress_factory(total) if progress_factory else (lambda: None)
    summary = run_sweep(
        db.new_session,
        now=now,
        older_than=older,
        reconcile=lambda practice_id, trigger: reconcile(practice_id, trigger=trigger, deps=deps),
        progress=progress,
    )
    deliver_tickets()
    return summary


def enqueue_sweep(older_than_seconds: int | None = None) -> str:
    from tasks.sweep import sweep_task
    from worker.celery_app import ensure_broker

    ensure_broker()
    return sweep_task.apply_async(kwargs={"older_than_seconds": older_than_seconds, "scheduled": False}).id

"""Data access for practices, their GUID history, control flags, tickets and audit records.

Keyword-only functions over a session the caller owns, and ``SqlStore``: the same over one
session, shaped as the use cases' ports (``reconciler.usecases.ports``). Nothing here commits but
``SqlStore.commit``: the caller (the act step, onboarding, a decision) owns the one transaction.
SQLAlchemy's errors stop here: a lost race surfaces as ``Conflict``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from models import Action, GuidHistory, Practice, PmsType, Reconciliation, Ticket, TicketKind, TicketReason, Trigger
from models.decision import OperatorDecision
from models.guard import AUTOSWITCH_PAUSED, KEY_REFUSED, ControlFlag
from reconciler.adapters import tickets
from reconciler.core.change import PracticeChange
from reconciler.core.errors import Conflict
from reconciler.core.policy import GuardState, Policy
from reconciler.core.identifiers import normalise_identifiers
from reconciler.core.errors import UnknownPractice
from reconciler.core.guids import parse_guid


def get_practice(session: Session, *, practice_id: int) -> Practice:
    practice = session.get(Practice, practice_id)
    if practice is None:
        raise UnknownPractice(f"no practice with id {practice_id}")
    return practice


def find_practice_by_pms(session: Session, *, pms_type: PmsType, pms_id: str) -> Practice | None:
    return session.exec(
        select(Practice).where(Practice.pms_type == pms_type, Practice.pms_id == pms_id)
    ).first()


def find_practice_by_guid(session: Session, *, guid: str) -> Practice | None:
    """The practice whose current GUID is ``guid``, else the one that had it before."""
    guid = parse_guid(guid)
    current = session.exec(select(Practice).where(Practice.halo_guid == guid).order_by(Practice.id)).first()
    if current is not None:
        return current
    past = session.exec(
        select(GuidHistory.practice_id)
        .where(GuidHistory.guid == guid)
        .order_by(col(GuidHistory.valid_from).desc())
    ).first()
    return session.get(Practice, past) if past is not None else None


def count_practices(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Practice)).one()


def keyset(session: Session, query: Any, *, order: Sequence[Any], key: Callable[[Any], tuple[Any, ...]],
           page: int = 500) -> Iterator[Any]:
    """Rows of ``query`` in ``order`` (unique, last column the primary key), a page at a time;
    ``key(row)`` gives a row's values of the ``order`` columns.

    Keyset pagination: each page starts after the previous page's last key, so memory and each
    query's cost stay constant however large the table (OFFSET would rescan the skipped rows).
    """
    last: tuple[Any, ...] | None = None
    while True:
        paged = query
        if last is not None:
            paged = paged.where(_after(order, last))
        rows = session.exec(paged.order_by(*order).limit(page)).all()
        if not rows:
            return
        yield from rows
        last = key(rows[-1])


def _after(order: Sequence[Any], last: tuple[Any, ...]) -> ColumnElement[bool]:
    """``(a, b, ...) > (last_a, last_b, ...)`` spelled so every database's planner uses the index."""
    clauses = []
    for i, column in enumerate(order):
        equal = [order[j] == last[j] for j in range(i)]
        clauses.append(and_(*equal, column > last[i]))
    return or_(*clauses)


def iter_practices(session: Session, *, batch: int = 500) -> Iterator[Practice]:
    """Every practice in id order, a page at a time (constant memory)."""
    for n, practice in enumerate(keyset(session, select(Practice), order=[col(Practice.id)],
                                                key=lambda p: (p.id,), page=batch), 1):
        yield practice
        if n % batch == 0:
            session.expunge_all()


def add_practice(
    session: Session,
    *,
    pms_type: PmsType,
    pms_id: str,
    halo_guid: str,
    identifiers: dict[str, Any],
    now: datetime,
    availability: str | None = None,
) -> Practice:
    """Record a newly onboarded practice and the first entry of its GUID history."""
    practice = Practice(
        pms_type=pms_type,
        pms_id=pms_id,
        halo_guid=parse_guid(halo_guid),
        practice_name=str(identifiers.get("practice_name") or ""),
        identifiers=dict(identifiers),
        identifiers_normalised=normalise_identifiers(identifiers),
        availability=availability,
        last_verified_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(practice)
    session.flush()
    session.add(GuidHistory(practice_id=practice.id, guid=practice.halo_guid, valid_from=now, reason="onboarded"))
    session.flush()
    return practice


def guid_history(session: Session, *, practice_id: int) -> Sequence[GuidHistory]:
    """Oldest first, the current GUID last."""
    return session.exec(
        select(GuidHistory)
        .where(GuidHistory.practice_id == practice_id)
        .order_by(col(GuidHistory.valid_from), col(GuidHistory.id))
    ).all()


def guid_histories(session: Session, *, practice_ids: Sequence[int]) -> dict[int, list[GuidHistory]]:
    """GUID histories of many practices in one query (for listings)."""
    result: dict[int, list[GuidHistory]] = {pid: [] for pid in practice_ids}
    if not practice_ids:
        return result
    rows = session.exec(
        select(GuidHistory)
        .where(col(GuidHistory.practice_id).in_(practice_ids))
        .order_by(col(GuidHistory.practice_id), col(GuidHistory.valid_from), col(GuidHistory.id))
    ).all()
    for row in rows:
        result[row.practice_id].append(row)
    return result


def previous_guids(session: Session, *, practice_id: int) -> dict[str, datetime]:
    """GUID → when the practice last switched away from it (a practice has a handful of rows)."""
    left: dict[str, datetime] = {}
    for row in guid_history(session, practice_id=practice_id):
        if row.valid_until is not None and (row.guid not in left or row.valid_until > left[row.guid]):
            left[row.guid] = row.valid_until
    return left


# --- sweep planning ---------------------------------------------------------------------------


def stale_practice_ids(session: Session, *, cutoff: datetime, page: int = 1000) -> Iterator[int]:
    """Practices last verified before ``cutoff``, oldest first."""
    query = select(Practice.last_verified_at, Practice.id).where(col(Practice.last_verified_at) < cutoff)
    for _, practice_id in keyset(session, query, order=[col(Practice.last_verified_at), col(Practice.id)],
                                     key=tuple, page=page):
        yield practice_id


def never_verified_ids(session: Session, *, page: int = 1000) -> Iterator[int]:
    query = select(Practice.id).where(col(Practice.last_verified_at).is_(None))
    yield from keyset(session, query, order=[col(Practice.id)], key=lambda practice_id: (practice_id,), page=page)


def due_retry_ids(session: Session, *, now: datetime, page: int = 1000) -> Iterator[int]:
    """Practices whose backoff has run out, soonest due first."""
    query = select(Practice.next_attempt_at, Practice.id).where(col(Practice.next_attempt_at) <= now)
    for _, practice_id in keyset(session, query, order=[col(Practice.next_attempt_at), col(Practice.id)],
                                     key=tuple, page=page):
        yield practice_id


# --- control flags ----------------------------------------------------------------------------


def flag(session: Session, name: str) -> ControlFlag | None:
    """The flag if it is set, else None."""
    row = session.get(ControlFlag, name)
    return row if row is not None and row.enabled else None


def set_flag(session: Session, name: str, enabled: bool, *, now: datetime, reason: str | None = None) -> None:
    row = session.get(ControlFlag, name) or ControlFlag(name=name)
    row.enabled = enabled
    row.reason = reason
    row.updated_at = now
    session.add(row)


# --- the store the use cases see ----------------------------------------------------------------


class SqlStore:
    """One unit of work over one session: what ``reconciler.usecases.ports.Store`` asks for."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # reading
    def practice(self, practice_id: int) -> Practice:
        return get_practice(self.session, practice_id=practice_id)

    def practice_by_pms(self, pms_type: PmsType, pms_id: str) -> Practice | None:
        return find_practice_by_pms(self.session, pms_type=pms_type, pms_id=pms_id)

    def practice_by_guid(self, guid: str) -> Practice | None:
        return find_practice_by_guid(self.session, guid=guid)

    def detach(self, practice: Practice) -> Practice:
        self.session.expunge(practice)
        return practice

    def previous_guids(self, practice_id: int) -> dict[str, datetime]:
        return previous_guids(self.session, practice_id=practice_id)

    def guid_history(self, practice_id: int) -> Sequence[GuidHistory]:
        return guid_history(self.session, practice_id=practice_id)

    def is_flag_set(self, name: str) -> bool:
        return flag(self.session, name) is not None

    def is_key_refused(self) -> bool:
        return self.is_flag_set(KEY_REFUSED)

    def guard_state(self, *, now: datetime, policy: Policy) -> GuardState:
        since = now - timedelta(seconds=policy.mass_change_window_seconds)
        switches = self.session.exec(
            select(func.count())
            .select_from(Reconciliation)
            .where(
                Reconciliation.action == Action.SWITCHED,
                Reconciliation.trigger != Trigger.MANUAL,
                col(Reconciliation.started_at) >= since,
            )
        ).one()
        # The limit is max(min, fraction x fleet) >= min: below min the fleet size cannot matter, and
        # counting 100,000 practices on every switch would.
        onboarded = count_practices(self.session) if switches >= policy.mass_change_min else 0
        return GuardState(autoswitch_paused=self.is_flag_set(AUTOSWITCH_PAUSED), switches_in_window=switches,
                          onboarded_practices=onboarded)

    # writing
    def write_practice(self, practice: Practice, values: dict[str, Any]) -> None:
        """``UPDATE practices ... WHERE id = ? AND version = ?``; no row means someone else won."""
        values = {**values, "version": practice.version + 1}
        result = self.session.execute(
            update(Practice).where(col(Practice.id) == practice.id, col(Practice.version) == practice.version)
            .values(**values)
        )
        if result.rowcount != 1:
            raise Conflict(f"practice {practice.id} changed since version {practice.version}")

    def switch_history(self, practice: Practice, new_guid: str, *, reason: str, now: datetime) -> None:
        self.session.execute(
            update(GuidHistory)
            .where(col(GuidHistory.practice_id) == practice.id, col(GuidHistory.valid_until).is_(None))
            .values(valid_until=now)
        )
        self.session.add(GuidHistory(practice_id=practice.id, guid=new_guid, valid_from=now, reason=reason))  # type: ignore[arg-type]

    def set_flag(self, name: str, enabled: bool, *, now: datetime, reason: str | None = None) -> None:
        set_flag(self.session, name, enabled, now=now, reason=reason)

    def open_ticket(self, *, kind: TicketKind, reason: TicketReason, practice_id: int | None, detail: str,
                    now: datetime) -> Ticket:
        ticket, _ = tickets.open_or_count(self.session, kind=kind, reason=reason, practice_id=practice_id,
                                          detail=detail, now=now)
        return ticket

    def resolve_tickets(self, *, practice_id: int | None, reasons: Sequence[TicketReason], now: datetime) -> None:
        tickets.resolve_where(self.session, practice_id=practice_id, reasons=reasons, now=now)

    def apply_change(self, practice: Practice, change: PracticeChange, *, now: datetime) -> int | None:
        """Everything one verdict changes; returns the first ticket it opened or counted."""
        self.write_practice(practice, change.values)
        if change.switch_to:
            self.switch_history(practice, change.switch_to, reason=change.history_reason, now=now)
        ticket_id = None
        for spec in change.tickets:
            ticket = self.open_ticket(kind=spec.kind, reason=spec.reason, detail=spec.detail, now=now,
                                      practice_id=None if spec.integrator_wide else practice.id)
            ticket_id = ticket_id or ticket.id
        if change.pause_autoswitch:
            self.set_flag(AUTOSWITCH_PAUSED, True, now=now, reason="mass-change guard")
        if change.resolve:
            self.resolve_tickets(practice_id=practice.id, reasons=change.resolve, now=now)
        if change.key_refused is True:
            self.set_flag(KEY_REFUSED, True, now=now, reason="Halo answered 401")
        elif change.key_refused is False and self.is_key_refused():
            self.set_flag(KEY_REFUSED, False, now=now)
        if change.resolve_integrator_wide:
            self.resolve_tickets(practice_id=None, reasons=change.resolve_integrator_wide, now=now)
        return ticket_id

    def due_retry_ids(self, *, now: datetime) -> Iterator[int]:
        return due_retry_ids(self.session, now=now)

    def never_verified_ids(self) -> Iterator[int]:
        return never_verified_ids(self.session)

    def stale_practice_ids(self, *, cutoff: datetime) -> Iterator[int]:
        return stale_practice_ids(self.session, cutoff=cutoff)

    def add_audit(self, audit: Reconciliation) -> Reconciliation:
        self.session.add(audit)
        self.session.flush()
        return audit

    # people's decisions (use cases: decisions)
    def add_decision(self, decision: OperatorDecision) -> OperatorDecision:
        self.session.add(decision)
        self.session.flush()
        return decision

    def open_tickets(self, *, practice_id: int) -> Sequence[Ticket]:
        return tickets.list_tickets(self.session, practice_id=practice_id)

    def acknowledge_ticket(self, ticket_id: int, *, now: datetime) -> Ticket:
        return tickets.acknowledge(self.session, ticket_id=ticket_id, now=now)

    def resolve_ticket(self, ticket_id: int, *, now: datetime) -> Ticket:
        return tickets.resolve(self.session, ticket_id=ticket_id, now=now)

    def add_practice(self, **fields: Any) -> Practice:
        """Insert a newly onboarded practice; a concurrent insert of the same one is a ``Conflict``."""
        try:
            with self.session.begin_nested():
                return add_practice(self.session, **fields)
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)[:200]) from None

    def commit(self) -> None:
        try:
            self.session.commit()
        except IntegrityError as exc:
            self.session.rollback()
            raise Conflict(str(exc.orig)[:200]) from None

    def rollback(self) -> None:
        self.session.rollback()

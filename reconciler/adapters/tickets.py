"""Tickets: opened once per de-duplication key, counted, resolved when the condition clears.

Every change to a ticket also writes outbox events in the same transaction (one per target: the
webhook, and the notification URLs for what a person should hear, when any is configured), so the
sinks deliver exactly what the database holds, even across a crash between commit and send.

``TicketStore`` holds the tickets' queries, each once, over ``self.session``; ``SqlStore``
(``reconciler.adapters.store``) is made of it and the rest, and is what every caller uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models import Practice, Ticket, TicketKind, TicketReason, TicketStatus
from models.outbox import NOTIFIED_EVENTS, OutboxEvent, OutboxTarget, is_repeat_notified, row_event_id, writes_notify
from models.ticket import TicketOut, dedup_key
from reconciler import logs
from reconciler.core.errors import InvalidState, UnknownTicket

log = logs.get_logger()

UNRESOLVED = (TicketStatus.OPEN, TicketStatus.ACKNOWLEDGED)
# An integrator-wide condition back within this long of its ticket's resolution is the same incident:
# its ticket reopens (one ticket, counted) rather than a new one per refusal, as a refused probe and a
# successful one alternate (the breaker resolves the ticket on each success).
REOPEN_WITHIN = timedelta(hours=1)


class TicketStore:
    """The tickets' half of ``SqlStore``: one unit of work's ticket reads and writes over its session."""

    session: Session

    def _unresolved(self, key: str) -> Ticket | None:
        return self.session.exec(
            select(Ticket).where(Ticket.dedup_key == key, col(Ticket.status).in_(UNRESOLVED))
        ).first()

    def _practice_name(self, practice_id: int | None) -> str | None:
        """The practice's recorded name, for people reading the event (from the session's identity map
        when the practice is loaded, as it is in a reconciliation: no statement)."""
        if practice_id is None:
            return None
        practice = self.session.get(Practice, practice_id)
        return practice.practice_name if practice is not None else None

    def _emitted(self, row_id: str) -> bool:
        return self.session.exec(select(OutboxEvent.id).where(OutboxEvent.event_id == row_id)).first() is not None

    def _emit(self, ticket: Ticket, event_type: str, now: datetime) -> None:
        # The id is stable for this state of the ticket: a redelivery carries the same id, so the
        # receiver can de-duplicate. One row per target: the webhook hears every event, people (the
        # notification URLs) only those in NOTIFIED_EVENTS, and only when there is a URL to tell them
        # through (the session knows: ``models.outbox.NOTIFIES``).
        event_id = f"ticket-{ticket.id}-{event_type}-{ticket.occurrences}"
        if event_type in ("resolved", "acknowledged"):
            event_id = f"ticket-{ticket.id}-{event_type}"
            if self._emitted(row_event_id(event_id, OutboxTarget.WEBHOOK)):
                # A reopened ticket (``_reopen_recent``) resolved again: a new event, named by its count.
                event_id = f"{event_id}-{ticket.occurrences}"
        payload = {"event": f"ticket.{event_type}", "ticket": TicketOut.from_row(ticket).to_json(),
                   "practice_name": self._practice_name(ticket.practice_id)}
        notified = event_type in NOTIFIED_EVENTS and writes_notify(self.session.info)
        targets = [OutboxTarget.WEBHOOK] + ([OutboxTarget.NOTIFY] if notified else [])
        for target in targets:
            row_id = row_event_id(event_id, target)
            if self._emitted(row_id):
                continue
            self.session.add(
                OutboxEvent(
                    event_id=row_id,
                    event_type=f"ticket.{event_type}",
                    target=target,
                    ticket_id=ticket.id,
                    payload=payload,
                    created_at=now,
                    next_attempt_at=now,
                )
            )

    def open_ticket(
        self,
        *,
        kind: TicketKind,
        reason: TicketReason,
        practice_id: int | None,
        detail: str,
        now: datetime,
    ) -> Ticket:
        """Open the ticket for this key, or count one more occurrence of the open one.

        The partial unique index decides between two workers opening the same ticket at once: the
        loser's insert fails inside a savepoint and it counts instead.
        """
        session = self.session
        key = dedup_key(kind, reason, practice_id)
        for _ in range(3):
            existing = self._unresolved(key)
            if existing is not None:
                session.execute(
                    update(Ticket)
                    .where(col(Ticket.id) == existing.id)
                    .values(occurrences=Ticket.occurrences + 1, last_seen_at=now, detail=detail)
                )
                session.refresh(existing)
                if is_repeat_notified(existing.occurrences):
                    self._emit(existing, "repeated", now)
                log.info("ticket_deduplicated", ticket_id=existing.id, kind=str(kind), reason=str(reason),
                         practice_id=practice_id, occurrences=existing.occurrences)
                return existing
            if practice_id is None and (reopened := self._reopen_recent(key, detail=detail, now=now)) is not None:
                return reopened
            ticket = Ticket(kind=kind, reason=reason, practice_id=practice_id, dedup_key=key, detail=detail,
                            opened_at=now, last_seen_at=now)
            try:
                with session.begin_nested():
                    session.add(ticket)
                    session.flush()
            except IntegrityError:
                continue
            self._emit(ticket, "opened", now)
            # The metrics (prometheus_client and redis) only once a ticket opens: the command line's
            # listings read tickets through this module and never open one (start-up time).
            from reconciler.adapters.metrics import observe_ticket_opened

            observe_ticket_opened(str(kind), str(reason))
            log.info("ticket_opened", ticket_id=ticket.id, kind=str(kind), reason=str(reason), practice_id=practice_id)
            return ticket
        raise RuntimeError(f"could not open or count ticket {key}")  # pragma: no cover - needs 3 lost races

    def _reopen_recent(self, key: str, *, detail: str, now: datetime) -> Ticket | None:
        """Reopen the integrator-wide ticket of ``key`` resolved within ``REOPEN_WITHIN``, if any (None: open a
        new one). A concurrent opening wins the unique index; the caller then counts on its ticket."""
        session = self.session
        recent = session.exec(
            select(Ticket).where(Ticket.dedup_key == key, Ticket.status == TicketStatus.RESOLVED,
                                 col(Ticket.resolved_at) >= now - REOPEN_WITHIN)
            .order_by(col(Ticket.resolved_at).desc())
        ).first()
        if recent is None:
            return None
        try:
            with session.begin_nested():
                session.execute(update(Ticket).where(col(Ticket.id) == recent.id, Ticket.status == TicketStatus.RESOLVED)
                                .values(status=TicketStatus.OPEN, resolved_at=None, acknowledged_at=None,
                                        occurrences=Ticket.occurrences + 1, last_seen_at=now, detail=detail))
        except IntegrityError:
            return None
        session.refresh(recent)
        self._emit(recent, "opened", now)
        log.info("ticket_reopened", ticket_id=recent.id, kind=str(recent.kind), reason=str(recent.reason),
                 occurrences=recent.occurrences)
        return recent

    def resolve_tickets(
        self,
        *,
        practice_id: int | None,
        reasons: Iterable[TicketReason],
        now: datetime,
        last_seen_before: datetime | None = None,
    ) -> list[Ticket]:
        """Resolve the unresolved tickets of a practice (or integrator-wide ones) with these reasons;
        with ``last_seen_before``, only those nobody has seen since (a condition still being reported stands)."""
        reasons = list(reasons)
        if not reasons:
            return []
        query = select(Ticket).where(col(Ticket.status).in_(UNRESOLVED), col(Ticket.reason).in_(reasons))
        query = query.where(Ticket.practice_id == practice_id) if practice_id is not None else query.where(
            col(Ticket.practice_id).is_(None)
        )
        if last_seen_before is not None:
            query = query.where(col(Ticket.last_seen_at) < last_seen_before)
        tickets = list(self.session.exec(query).all())
        for ticket in tickets:
            self._resolve(ticket, now)
        return tickets

    def _resolve(self, ticket: Ticket, now: datetime) -> None:
        ticket.status = TicketStatus.RESOLVED
        ticket.resolved_at = now
        self.session.add(ticket)
        self.session.flush()
        self._emit(ticket, "resolved", now)
        log.info("ticket_resolved", ticket_id=ticket.id, kind=str(ticket.kind), reason=str(ticket.reason),
                 practice_id=ticket.practice_id)

    def ticket(self, ticket_id: int) -> Ticket:
        ticket = self.session.get(Ticket, ticket_id)
        if ticket is None:
            raise UnknownTicket(f"no ticket with id {ticket_id}")
        return ticket

    def acknowledge_ticket(self, ticket_id: int, *, now: datetime) -> Ticket:
        ticket = self.ticket(ticket_id)
        if ticket.status != TicketStatus.OPEN:
            raise InvalidState(f"ticket {ticket_id} is {ticket.status}, only an open ticket can be acknowledged")
        ticket.status = TicketStatus.ACKNOWLEDGED
        ticket.acknowledged_at = now
        self.session.add(ticket)
        self.session.flush()
        self._emit(ticket, "acknowledged", now)
        return ticket

    def resolve_ticket(self, ticket_id: int, *, now: datetime) -> Ticket:
        ticket = self.ticket(ticket_id)
        if ticket.status == TicketStatus.RESOLVED:
            raise InvalidState(f"ticket {ticket_id} is already resolved")
        self._resolve(ticket, now)
        return ticket

    def list_tickets(
        self,
        *,
        statuses: Sequence[TicketStatus] = UNRESOLVED,
        kind: TicketKind | None = None,
        practice_id: int | None = None,
    ) -> Sequence[Ticket]:
        """Tickets in id order: unresolved ones unless ``statuses`` says otherwise."""
        query = select(Ticket).where(col(Ticket.status).in_(list(statuses)))
        if kind is not None:
            query = query.where(Ticket.kind == kind)
        if practice_id is not None:
            query = query.where(Ticket.practice_id == practice_id)
        return self.session.exec(query.order_by(col(Ticket.id))).all()

    def held_tickets(self, practice_ids: Sequence[int], *, reasons: Sequence[TicketReason]) -> dict[int, Ticket]:
        """The unresolved ticket with one of ``reasons`` of each of these practices (the console's
        overview: what holds each held practice)."""
        if not practice_ids:
            return {}
        rows = self.session.exec(select(Ticket).where(col(Ticket.practice_id).in_(practice_ids),
                                                      col(Ticket.status).in_(UNRESOLVED),
                                                      col(Ticket.reason).in_(reasons))).all()
        return {t.practice_id: t for t in rows}  # type: ignore[misc]

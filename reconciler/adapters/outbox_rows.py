"""The outbox as people see it: rows listed newest first, one row by id, and what each target has
not delivered yet (for ``health``, the metrics and the console's banner). SQL only: the command line's
``outbox list`` pays for no HTTP client (``outbox.py`` sends)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from models.outbox import OutboxEvent, OutboxStatus
from reconciler.core.errors import BadInput


def parse_status(value: str | None) -> OutboxStatus | None:
    if value is None:
        return None
    try:
        return OutboxStatus(value.strip())
    except ValueError:
        raise BadInput(f"unknown outbox status {value.strip()[:40]!r}: expected pending, failed or delivered") from None


def list_events(session: Session, *, status: OutboxStatus | None = None, limit: int = 100,
                before_id: int | None = None, undelivered: bool = False,
                targets: Sequence[str] | None = None) -> list[OutboxEvent]:
    """Outbox rows, newest first (by id: rows are written in time order), through ``(status, id)``;
    ``before_id`` is the keyset cursor (the last id of the previous page)."""
    query = select(OutboxEvent)
    if status is not None:
        query = query.where(OutboxEvent.status == status)
    elif undelivered:
        query = query.where(OutboxEvent.status != OutboxStatus.DELIVERED)
    if targets is not None:
        query = query.where(col(OutboxEvent.target).in_(list(targets)))
    if before_id is not None:
        query = query.where(OutboxEvent.id < before_id)
    return list(session.exec(query.order_by(col(OutboxEvent.id).desc()).limit(limit)).all())


def unsent_elsewhere(session: Session, *, targets: Sequence[str]) -> dict[str, int]:
    """Undelivered rows for targets this deployment does not send to, by target: webhook events
    written while no webhook is configured (they go out if one is configured later), and notification
    rows written before the write path learned that no notification URL is configured (the retention
    pass drops those: ``wiring.drop_unheard_notifications``)."""
    rows = session.exec(select(OutboxEvent.target, func.count())
                        .where(OutboxEvent.status != OutboxStatus.DELIVERED,
                               col(OutboxEvent.target).not_in(list(targets)))
                        .group_by(OutboxEvent.target)).all()
    return {str(target): int(n) for target, n in rows}


def drop_undelivered(session: Session, *, target: str) -> int:
    """Delete ``target``'s pending and failed rows (the caller commits); how many. Only for a target this
    deployment has no receiver for: nothing can ever deliver them."""
    result = session.execute(delete(OutboxEvent).where(OutboxEvent.target == target,
                                                       OutboxEvent.status != OutboxStatus.DELIVERED))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def get_event(session: Session, *, event_id: int) -> OutboxEvent:
    row = session.get(OutboxEvent, event_id)
    if row is None:
        raise BadInput(f"no outbox event {event_id}")
    return row


@dataclass(frozen=True)
class Waiting:
    """What one target has not delivered yet: counts, and its oldest undelivered row."""

    target: str
    pending: int
    failed: int
    oldest_created_at: datetime | None
    oldest_last_error: str | None

    def age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.oldest_created_at).total_seconds()) if self.oldest_created_at else 0.0


def waiting(session: Session, *, targets: Sequence[str]) -> list[Waiting]:
    """Per target (of those configured: rows for a target nobody sends to wait for nobody) with anything
    undelivered (pending or failed): counts and the oldest row's error."""
    if not targets:
        return []
    counts = session.exec(
        select(OutboxEvent.target, OutboxEvent.status, func.count())
        .where(OutboxEvent.status != OutboxStatus.DELIVERED, col(OutboxEvent.target).in_(list(targets)))
        .group_by(OutboxEvent.target, OutboxEvent.status)
    ).all()
    by_target: dict[str, dict[str, int]] = {}
    for target, status, n in counts:
        by_target.setdefault(str(target), {})[str(status)] = int(n)
    out = []
    for target in sorted(by_target):
        oldest = session.exec(
            select(OutboxEvent).where(OutboxEvent.target == target, OutboxEvent.status != OutboxStatus.DELIVERED)
            .order_by(col(OutboxEvent.id)).limit(1)
        ).first()
        out.append(Waiting(target=target, pending=by_target[target].get(OutboxStatus.PENDING, 0),
                           failed=by_target[target].get(OutboxStatus.FAILED, 0),
                           oldest_created_at=oldest.created_at if oldest else None,
                           oldest_last_error=oldest.last_error if oldest else None))
    return out

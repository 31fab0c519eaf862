"""Ticket events waiting to be delivered: written in the act transaction, sent after.

One row per event and target (``webhook``, ``notify``): each target keeps its own attempts and
backoff, so a Slack outage never delays the webhook and a retry re-sends to one target only. The
row's ``event_id`` is its idempotency id and is unique: the webhook's row carries the event's own id
(``ticket-7-opened-1``), the notification row the same id prefixed ``notify-``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class OutboxStatus(StrEnum):
    """Where a row stands: waiting for its next attempt, given up on after its last (kept, listed and
    retried by a person: ``outbox retry``), or taken by its target."""

    PENDING = "pending"
    FAILED = "failed"
    DELIVERED = "delivered"


class OutboxTarget(StrEnum):
    WEBHOOK = "webhook"  # every ticket event, HMAC-signed (reconciler/adapters/webhook.py)
    NOTIFY = "notify"  # what a person should hear about, through Apprise (reconciler/adapters/notify.py)


# The ticket events a person is told about (HALO_RECONCILER_NOTIFY_URLS). An acknowledgement is a
# person's own act: telling them about it is noise.
NOTIFIED_EVENTS = frozenset({"opened", "repeated", "resolved"})
# A ticket seen again is announced ("repeated") at its 10th occurrence, then each time the count
# doubles (20, 40, 80, ...): a condition that keeps coming back is heard about again, a storm of it
# costs a handful of messages, not one per occurrence.
REPEAT_FIRST = 10


def is_repeat_notified(occurrences: int) -> bool:
    """True for the occurrence counts announced as ``repeated``: 10, 20, 40, 80, ..."""
    if occurrences < REPEAT_FIRST or occurrences % REPEAT_FIRST:
        return False
    multiple = occurrences // REPEAT_FIRST
    return multiple & (multiple - 1) == 0


# ``Session.info`` key: whether this session's writes carry notification rows. The process's one place
# that builds sessions (``worker.db.new_session``) sets it from the configuration: with no notification
# URL there is nobody to deliver a ``notify`` row to, so none is written (a row per target nobody sends
# to would wait for nobody, forever). A session that does not say writes a row for every target.
NOTIFIES = "halo_outbox_notifies"


def writes_notify(info: dict[str, Any]) -> bool:
    """Whether a session with this ``info`` writes ``notify`` rows (see ``NOTIFIES``)."""
    return bool(info.get(NOTIFIES, True))


def row_event_id(event_id: str, target: OutboxTarget) -> str:
    """The row's unique idempotency id for this event and target."""
    return event_id if target is OutboxTarget.WEBHOOK else f"{target}-{event_id}"


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_pending", "delivered_at", "next_attempt_at"),
        Index("ix_outbox_events_status_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Stable across retries: the receiver de-duplicates on it.
    event_id: str = Field(sa_type=String(64), nullable=False, unique=True)
    event_type: str = Field(sa_type=String(64), nullable=False)
    target: OutboxTarget = Field(default=OutboxTarget.WEBHOOK, sa_type=String(16), nullable=False,
                                 sa_column_kwargs={"server_default": OutboxTarget.WEBHOOK.value})
    ticket_id: int | None = None
    status: OutboxStatus = Field(default=OutboxStatus.PENDING, sa_type=String(16), nullable=False,
                                 sa_column_kwargs={"server_default": OutboxStatus.PENDING.value})
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attempts: int = Field(default=0, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=String(512))
    # Fingerprints (never the URLs: they hold tokens) of the notification URLs that already took this
    # event: a retry after a partial failure sends only to the others.
    delivered_to: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class OutboxOut(SQLModel):
    """One row as ``outbox list --json`` prints it (PRODUCT.md, "Nothing is delivered silently late")."""

    id: int
    event: str
    target: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None  # null once delivered or failed: nothing is scheduled then
    delivered_at: datetime | None

    @classmethod
    def from_row(cls, row: OutboxEvent) -> "OutboxOut":
        pending = row.status == OutboxStatus.PENDING
        return cls(id=row.id or 0, event=row.event_type, target=str(row.target), status=str(row.status),
                   attempts=row.attempts, last_error=row.last_error, created_at=row.created_at,
                   next_attempt_at=row.next_attempt_at if pending else None, delivered_at=row.delivered_at)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

"""Tickets for people, de-duplicated: one open ticket per (practice, kind, reason), integrator-wide once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlmodel import Field, SQLModel

from reconciler.core.vocabulary import TicketKind, TicketReason, TicketStatus
from models.types import UTCDateTime, postgresql_where_on_create, utcnow

UNRESOLVED_SQL = "status != 'resolved'"


def dedup_key(kind: TicketKind, reason: TicketReason, practice_id: int | None) -> str:
    scope = "integrator" if practice_id is None else f"practice:{practice_id}"
    return f"{scope}:{kind}:{reason}"


class Ticket(SQLModel, table=True):
    __tablename__ = "tickets"
    __table_args__ = (
        # At most one unresolved ticket per key, enforced by the database so racing workers
        # cannot open two.
        Index("uq_tickets_open_dedup_key", "dedup_key", unique=True, sqlite_where=text(UNRESOLVED_SQL)),
        Index("ix_tickets_status_kind", "status", "kind"),
        Index("ix_tickets_practice_id", "practice_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: TicketKind = Field(sa_type=String(32), nullable=False)
    reason: TicketReason = Field(sa_type=String(32), nullable=False)
    status: TicketStatus = Field(default=TicketStatus.OPEN, sa_type=String(16), nullable=False)
    practice_id: int | None = Field(
        default=None, sa_type=Integer, sa_column_args=[ForeignKey("practices.id", ondelete="CASCADE")]
    )
    dedup_key: str = Field(sa_type=String(128), nullable=False)
    occurrences: int = Field(default=1, nullable=False)
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    detail: str = Field(default="", sa_type=String(2000), nullable=False)


postgresql_where_on_create(next(i for i in Ticket.__table__.indexes if i.name == "uq_tickets_open_dedup_key"),
                           UNRESOLVED_SQL)


class TicketOut(SQLModel):
    """A ticket as the command line and the webhook print it (PRODUCT.md, "A ticket")."""

    id: int
    kind: TicketKind
    reason: TicketReason
    status: TicketStatus
    practice_id: int | None
    occurrences: int
    opened_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    detail: str

    @classmethod
    def from_row(cls, ticket: Ticket) -> "TicketOut":
        return cls.model_validate(ticket, from_attributes=True)

    def to_json(self) -> dict:
        return self.model_dump(mode="json")

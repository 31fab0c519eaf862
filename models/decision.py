"""A person's decision, with a name on it: the audit trail's half that is not the worker's.

One row per decision (approved, rejected, acknowledged, resolved, paused, resumed, paired), written in
the same transaction as what it decided. ``audit`` reads these beside the worker's reconciliations,
each list through its own time index, newest first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class OperatorDecision(SQLModel, table=True):
    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_at_id", "at", "id"),
        Index("ix_decisions_practice_at", "practice_id", "at"),
        # audit filtered by who decided, newest first.
        Index("ix_decisions_actor_at_id", "actor", "at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(sa_type=String(128), nullable=False)
    # approved, rejected, acknowledged, resolved, paused, resumed, paired, ... (DecisionAction: at most 16)
    action: str = Field(sa_type=String(16), nullable=False)
    practice_id: int | None = Field(
        default=None, sa_type=Integer, sa_column_args=[ForeignKey("practices.id", ondelete="CASCADE")]
    )
    ticket_id: int | None = Field(default=None, sa_type=Integer)
    # The reconciliation row the decision wrote (approve's switch), so audit lists the decision once.
    reconciliation_id: int | None = Field(default=None, sa_type=Integer)
    note: str | None = Field(default=None, sa_type=String(1000))
    detail: str | None = Field(default=None, sa_type=String(2000))

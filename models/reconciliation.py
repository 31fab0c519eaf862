"""The audit record of one reconciliation: what triggered it, what Halo said, what we decided and did."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, String
from sqlmodel import Field, SQLModel

from reconciler.core.vocabulary import Action, Trigger, Verdict
from models.types import UTCDateTime, utcnow


class Reconciliation(SQLModel, table=True):
    __tablename__ = "reconciliations"
    __table_args__ = (
        Index("ix_reconciliations_practice_started", "practice_id", "started_at"),
        # The mass-change guard counts recent automatic switches fleet-wide.
        Index("ix_reconciliations_action_started", "action", "started_at"),
        # audit: every reconciliation, newest first.
        Index("ix_reconciliations_started_id", "started_at", "id"),
        # audit filtered by practice or by action: keyset pages on (started_at, id) within each.
        Index("ix_reconciliations_practice_started_id", "practice_id", "started_at", "id"),
        Index("ix_reconciliations_action_started_id", "action", "started_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    practice_id: int = Field(
        sa_type=Integer, sa_column_args=[ForeignKey("practices.id", ondelete="CASCADE")], nullable=False
    )
    trigger: Trigger = Field(sa_type=String(16), nullable=False)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration_ms: int | None = None
    verdict: Verdict = Field(sa_type=String(32), nullable=False)
    action: Action = Field(sa_type=String(32), nullable=False)
    old_guid: str | None = Field(default=None, sa_type=String(36))
    new_guid: str | None = Field(default=None, sa_type=String(36))
    ticket_id: int | None = None
    halo_calls: int = Field(default=0, nullable=False)
    # What Halo answered, summarised (sites seen, error status and message); never a header.
    halo_answer: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    detail: str | None = Field(default=None, sa_type=String(2000))
    # Who decided, for the rows a person's decision wrote (approve, pair, reject); None: the worker.
    actor: str | None = Field(default=None, sa_type=String(128))
    note: str | None = Field(default=None, sa_type=String(1000))

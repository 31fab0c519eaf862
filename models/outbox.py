"""Ticket events waiting to be delivered to the webhook: written in the act transaction, sent after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_pending", "delivered_at", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    # Stable across retries: the receiver de-duplicates on it.
    event_id: str = Field(sa_type=String(64), nullable=False, unique=True)
    event_type: str = Field(sa_type=String(64), nullable=False)
    ticket_id: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attempts: int = Field(default=0, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=String(512))

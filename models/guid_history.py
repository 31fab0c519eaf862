"""Every GUID a practice ever had, so a 403 naming an old GUID still finds its practice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class GuidHistory(SQLModel, table=True):
    __tablename__ = "guid_history"
    __table_args__ = (
        Index("ix_guid_history_guid", "guid"),
        Index("ix_guid_history_practice_from", "practice_id", "valid_from"),
    )

    id: int | None = Field(default=None, primary_key=True)
    practice_id: int = Field(
        sa_type=Integer, sa_column_args=[ForeignKey("practices.id", ondelete="CASCADE")], nullable=False
    )
    guid: str = Field(sa_type=String(36), nullable=False)
    valid_from: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    valid_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # onboarded, infrastructure_change, approved, ...
    reason: str = Field(sa_type=String(64), nullable=False)

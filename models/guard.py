"""Integrator-wide switches a person controls, such as the mass-change guard's pause."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow

AUTOSWITCH_PAUSED = "autoswitch_paused"


class ControlFlag(SQLModel, table=True):
    __tablename__ = "control_flags"

    name: str = Field(sa_type=String(64), primary_key=True)
    enabled: bool = Field(default=False, sa_type=Boolean, nullable=False)
    reason: str | None = Field(default=None, sa_type=String(512))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)

"""Approvals given to a held change that needs more than one (``HALO_RECONCILER_APPROVALS_REQUIRED``).

Each row is one person's approval of one proposal, named by its fingerprint (the proposed GUID and
its normalised identifiers): an approval counts only while the practice still proposes exactly that,
so a new proposal from Halo starts again from none. The rows of a practice are deleted when its held
change is decided (switched, rejected or released).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("practice_id", "fingerprint", "actor", name="uq_approvals_once_each"),)

    id: int | None = Field(default=None, primary_key=True)
    practice_id: int = Field(sa_type=Integer, nullable=False,
                             sa_column_args=[ForeignKey("practices.id", ondelete="CASCADE")])
    fingerprint: str = Field(sa_type=String(128), nullable=False)
    actor: str = Field(sa_type=String(128), nullable=False)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)

"""Routine verifications folded by retention: one count per practice and UTC day.

``reconciler.core.retention`` says which audit rows are routine; ``ROUTINE_VERIFICATION_SQL`` is
that rule in SQL, used by the store's retention queries and by the partial index that lets a
pass find them in (started_at, id) order without reading the rows it keeps. Migration 0007 holds
a copy of the text: PostgreSQL uses a partial index only for a query whose WHERE names its predicate.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, ForeignKey, Index, Integer, text
from sqlmodel import Field, SQLModel

from models.reconciliation import Reconciliation
from models.types import postgresql_where_on_create
from reconciler.core.retention import routine_sql

ROUTINE_VERIFICATION_SQL = routine_sql()


class VerificationDay(SQLModel, table=True):
    __tablename__ = "verification_days"

    practice_id: int = Field(sa_type=Integer, primary_key=True,
                             sa_column_args=[ForeignKey("practices.id", ondelete="CASCADE")])
    day: date = Field(sa_type=Date, primary_key=True)
    count: int = Field(nullable=False)


# Declared on the reconciliations table from here, beside the rule it indexes.
ROUTINE_INDEX = Index(
    "ix_reconciliations_routine_started",
    Reconciliation.__table__.c.started_at,
    Reconciliation.__table__.c.id,
    sqlite_where=text(ROUTINE_VERIFICATION_SQL),
)
postgresql_where_on_create(ROUTINE_INDEX, ROUTINE_VERIFICATION_SQL)

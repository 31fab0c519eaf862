"""The partial indexes keep their predicate on both databases, though the PostgreSQL half is attached
only when PostgreSQL DDL is emitted (models/types.py: the dialect is not imported on SQLite)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

import models  # noqa: F401  (registers every table)
from models.ticket import UNRESOLVED_SQL
from models.verification_day import ROUTINE_VERIFICATION_SQL

pytestmark = pytest.mark.integration

PARTIAL = ("uq_tickets_open_dedup_key", "ix_reconciliations_routine_started")


def test_postgresql_creates_them_partial(postgres_url):
    engine = create_engine(postgres_url)
    try:
        SQLModel.metadata.create_all(engine)
        with engine.connect() as connection:
            rows = dict(connection.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(:names)"),
                                           {"names": list(PARTIAL)}).all())
    finally:
        engine.dispose()

    assert set(rows) == set(PARTIAL)
    assert all(" WHERE " in definition for definition in rows.values()), rows
    assert "resolved" in rows["uq_tickets_open_dedup_key"]


def test_sqlite_creates_them_partial(sqlite_url):
    engine = create_engine(sqlite_url)
    try:
        SQLModel.metadata.create_all(engine)
        with engine.connect() as connection:
            rows = dict(connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")).all())
    finally:
        engine.dispose()

    assert UNRESOLVED_SQL in rows["uq_tickets_open_dedup_key"]
    assert ROUTINE_VERIFICATION_SQL in rows["ix_reconciliations_routine_started"]

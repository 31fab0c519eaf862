"""Migrations up and down on SQLite and on a real PostgreSQL; models and migrations cannot drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

import models  # noqa: F401
from models import Practice, Ticket, TicketKind, TicketReason, TicketStatus
from models.practice import is_compared
from models.ticket import dedup_key
from worker import db
from worker.config import get_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, monkeypatch, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    db.reset_engine()
    yield request.param
    db.reset_engine()


def tables() -> set[str]:
    return set(inspect(db.get_engine()).get_table_names()) - {"alembic_version"}


def test_up_down_up(database):
    db.upgrade_schema()
    assert tables() == set(SQLModel.metadata.tables)
    assert db.current_revision() == db.head_revision()
    db.downgrade_schema("base")
    assert tables() == set()
    db.upgrade_schema()
    assert tables() == set(SQLModel.metadata.tables)


def test_models_match_migrations(database):
    db.upgrade_schema()
    with db.get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": is_compared})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_one_open_ticket_per_key_is_enforced_by_the_database(database):
    db.upgrade_schema()
    key = dedup_key(TicketKind.CONTACT_PRACTICE, TicketReason.NOT_FOUND, None)

    def ticket(status=TicketStatus.OPEN):
        return Ticket(kind=TicketKind.CONTACT_PRACTICE, reason=TicketReason.NOT_FOUND, dedup_key=key, status=status)

    with db.new_session() as session:
        session.add(ticket())
        session.commit()
        session.add(ticket())
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        first = session.exec(select(Ticket)).one()
        first.status = TicketStatus.RESOLVED
        session.add(first)
        session.commit()
        session.add(ticket())
        session.commit()
        assert len(session.exec(select(Ticket)).all()) == 2


def test_timestamps_come_back_as_aware_utc(database):
    db.upgrade_schema()
    sydney = timezone(timedelta(hours=11))
    moment = datetime(2026, 11, 24, 20, 0, tzinfo=sydney)
    with db.new_session() as session:
        session.add(Practice(pms_type="BestPractice", pms_id="1", halo_guid="g", practice_name="n",
                             last_verified_at=moment))
        session.commit()
    with db.new_session() as session:
        got = session.exec(select(Practice)).one().last_verified_at
    assert got == moment and got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(database):
    db.upgrade_schema()
    with db.new_session() as session:
        session.add(Practice(pms_type="BestPractice", pms_id="1", halo_guid="g", practice_name="n",
                             last_verified_at=datetime(2026, 1, 1)))
        with pytest.raises(Exception, match="naive"):
            session.commit()


def test_postgres_refuses_to_run_on_an_outdated_schema(monkeypatch, postgres_url):
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    db.reset_engine()
    with pytest.raises(db.SchemaOutdated, match="halo-reconciler db upgrade"):
        db.ensure_schema()
    db.upgrade_schema()
    db.ensure_schema()


def test_embedded_sqlite_is_created_on_first_use():
    db.ensure_schema()
    assert tables() == set(SQLModel.metadata.tables)
    assert (get_settings().data_dir / "halo-reconciler.sqlite3").exists()


def _ensure_in_child(data_dir: str) -> str | None:
    import os

    os.environ["HALO_RECONCILER_DATA_DIR"] = data_dir
    from worker import db as child_db
    from worker.config import get_settings as child_settings

    child_settings.cache_clear()
    child_db.reset_engine()
    child_db.ensure_schema()
    return child_db.current_revision()


def test_two_processes_creating_the_embedded_schema_at_once_both_succeed(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        revisions = pool.map(_ensure_in_child, [str(tmp_path / "shared")] * 4)
    assert set(revisions) == {db.head_revision()}


def test_unreachable_database_is_reported_without_the_password(monkeypatch):
    from tests.utils.servers import free_port

    monkeypatch.setenv("DATABASE_URL", f"postgresql://alice:hunter2secret@127.0.0.1:{free_port()}/x")
    get_settings.cache_clear()
    db.reset_engine()
    with pytest.raises(db.DatabaseUnavailable) as raised:
        db.ensure_schema()
    assert "hunter2secret" not in str(raised.value)
    assert "***" in str(raised.value)


def test_0004_keeps_existing_reconciliations_as_the_workers_and_adds_the_people_tables(database):
    from sqlalchemy import text

    from reconciler.adapters import listings

    db.upgrade_schema("0003")
    with db.get_engine().begin() as connection:
        connection.execute(text(
            "INSERT INTO practices (id, pms_type, pms_id, halo_guid, practice_name, identifiers, "
            "identifiers_normalised, state, backoff_attempts, created_at, updated_at, version) VALUES "
            "(1, 'Zedmed', 'Z1', '3f2504e0-4f89-41d3-9a0c-0305e82c3301', 'Zed', '{}', '{}', 'active', 0, "
            ":t, :t, 1)"), {"t": datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)})
        connection.execute(text(
            "INSERT INTO reconciliations (practice_id, trigger, started_at, verdict, action, halo_calls, "
            "halo_answer) VALUES (1, 'sweep', :t, 'unchanged', 'marked_verified', 1, '{}')"),
            {"t": datetime(2026, 1, 2, tzinfo=UTC).replace(tzinfo=None)})
    db.upgrade_schema()
    assert {"decisions", "operators"} <= tables()
    with db.new_session() as session:
        [entry] = listings.audit_pages(session)
    assert (entry.actor, entry.action, entry.practice_id, entry.note) == ("worker", "marked_verified", 1, None)
    db.downgrade_schema("0003")
    assert not {"decisions", "operators"} & tables()

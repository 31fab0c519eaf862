"""The engine's disconnect handling on a real PostgreSQL: a connection idle past the window is pinged at
checkout and replaced if dead; one given back moments ago is used without a ping (``worker.db``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from worker import db
from worker.config import get_settings


@pytest.fixture
def postgres(monkeypatch, postgres_url):
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    db.reset_engine()
    admin = create_engine(postgres_url, poolclass=NullPool)
    yield admin
    admin.dispose()
    db.reset_engine()


def backend_pid() -> int:
    with db.get_engine().connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def terminate(admin, pid: int) -> None:  # noqa: ANN001
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()


def test_a_connection_that_died_while_idle_is_replaced_before_it_is_used(postgres, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every connection given back counts as idle
    first = backend_pid()
    terminate(postgres, first)
    # The checkout's ping meets the dead socket; the pool connects again and the statement runs.
    second = backend_pid()
    assert second != first
    assert backend_pid() == second  # the new one is kept, pinged and reused


def test_a_connection_used_moments_ago_is_not_pinged(postgres, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = backend_pid()
    terminate(postgres, first)
    # No ping: the statement itself meets the dead socket (what pool_pre_ping would have hidden) ...
    with pytest.raises(OperationalError):
        backend_pid()
    # ... and SQLAlchemy's optimistic handling has invalidated the pool: the next checkout connects again.
    assert backend_pid() != first


def test_a_pinged_connection_is_handed_out_idle_and_a_read_alone_runs_in_autocommit(postgres, monkeypatch):
    from reconciler.adapters.store import SqlStore

    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every checkout pings
    db.upgrade_schema()
    backend_pid()  # a connection given back to the pool, pinged at its next checkout
    with db.unit_of_work() as session:
        # The run's read switches the connection to autocommit: the ping must not have left it in a
        # transaction (psycopg refuses the switch then). No practice has id 0.
        from reconciler.core.errors import UnknownPractice

        with pytest.raises(UnknownPractice):
            SqlStore(session).practice_for_run(0, switches_since=datetime.now(UTC))
        session.rollback()
    assert backend_pid()

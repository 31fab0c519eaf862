"""The database: one engine per process, sessions, and the schema's version.

The embedded SQLite database is created and migrated on first use; PostgreSQL is migrated only by
``halo-reconciler db upgrade`` (a deployment step), and other commands refuse to run on an outdated
schema rather than guess.
"""

from __future__ import annotations

import ast
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlmodel import Session

import models
from models.outbox import NOTIFIES
from worker.config import get_settings
from worker.per_process import PerProcess

if TYPE_CHECKING:
    from alembic.config import Config


class DatabaseError(Exception):
    pass


class DatabaseUnavailable(DatabaseError):
    pass


class SchemaOutdated(DatabaseError):
    pass


_checked: set[tuple[int, str]] = set()

MIGRATIONS = Path(models.__file__).resolve().parent / "migrations"


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001
    cursor = dbapi_connection.cursor()
    # WAL lets the worker, beat and the command line read while one of them writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# Connections the engine keeps: five (a prefork child runs one task at a time), or one per thread of
# a threads-pool worker (``reserve_connections``), so that no run waits for another's connection.
POOL_SIZE = 5


def reserve_connections(threads: int) -> None:
    """This process runs ``threads`` tasks at once (Celery's threads pool): keep a connection for
    each. Called before the engine is built (``worker.process``); an engine built already is rebuilt."""
    global POOL_SIZE
    POOL_SIZE = max(5, threads)
    reset_engine()


def _build(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = make_url(url).database
        pool: dict[str, int] = {}
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            pool = {"pool_size": POOL_SIZE, "max_overflow": 10}  # SQLAlchemy's QueuePool for a file
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=5)
    event.listen(engine, "checkin", _note_idle)
    event.listen(engine, "checkout", _ping_after_idle(engine.dialect.loaded_dbapi.Error))
    return engine


# SQLAlchemy's "pessimistic" disconnect handling (``pool_pre_ping``) pings on every checkout: two round
# trips per reconciliation (its read and its act step each check a connection out), moments apart. A
# connection given back less than this long ago was answering then; one idle for longer (a database
# restarted, a proxy's idle timeout) is pinged first, and a dead one replaced before anything uses it.
# A disconnect within the window is still handled "optimistically": the statement fails, SQLAlchemy
# invalidates the pool, and the task's retry (``reconcile.retry_in``: OperationalError is transient)
# meets fresh connections.
PING_AFTER_IDLE_SECONDS = 5.0


def _note_idle(dbapi_connection, record) -> None:  # noqa: ANN001
    record.info["idle_since"] = time.monotonic()


def _ping_after_idle(driver_error: type[Exception]):
    def ping(dbapi_connection, record, proxy) -> None:  # noqa: ANN001
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # a new connection (it just answered the connect) or one in use moments ago
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            # The driver began a transaction for the ping: end it, so the connection is handed out as
            # idle as the pool holds it (a read in autocommit can switch it then: SqlStore._read_alone).
            dbapi_connection.rollback()
        except driver_error as exc:
            # The pool discards this connection and connects again (up to three times) before using it.
            raise DisconnectionError(f"a connection idle for {time.monotonic() - idle_since:.0f} s "
                                     "did not answer") from exc

    return ping


# This process's engine, by URL (a new URL disposes of the old engine). One inherited from the parent
# drops its pool without closing the parent's sockets.
_engines: PerProcess[str, Engine] = PerProcess(
    _build, close=Engine.dispose, forget_inherited=lambda engine: engine.dispose(close=False))


def get_engine() -> Engine:
    """This process's engine, built on first use and rebuilt after a fork."""
    return _engines.get(get_settings().effective_database_url)


def reset_engine() -> None:
    """Forget this process's engine (tests, or after the configuration changed)."""
    _engines.reset()
    _checked.clear()


def new_session() -> Session:
    """A session on this process's engine. It carries what the configuration says about the outbox's
    targets (``models.outbox.NOTIFIES``): with no notification URL, ticket events write no ``notify`` row."""
    return Session(get_engine(), expire_on_commit=False, info={NOTIFIES: bool(get_settings().notify_urls)})


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """The one unit of work: a fresh session over a current schema. Nothing is written unless the
    caller commits; whatever it did not commit is rolled back when the block ends (``wiring.unit_of_work``
    hands the use cases the same, as a ``SqlStore``; the admin and the console use the session)."""
    ensure_schema()
    session = new_session()
    try:
        yield session
    finally:
        session.close()


# --- schema ---------------------------------------------------------------------------------------


# Every command checks the schema's version before it touches the database, and Alembic's runtime
# (with Mako and every dialect's DDL) costs more to import than a listing takes to run. So the check
# reads the version row and the head revision itself, and Alembic is imported only to migrate. The
# cheap answers are Alembic's own whenever the history is a single line; anything else (branches,
# several version rows) asks Alembic, so the check is never wrong, only slower.
VERSION_TABLE = "alembic_version"  # Alembic's default; models/migrations/env.py keeps it


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config  # Alembic only to migrate or to read a branching history (start-up time)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url or get_settings().effective_database_url
    return config


def _revision_ids(path: Path) -> tuple[str | None, tuple[str, ...]] | None:
    """``revision`` and ``down_revision`` of one migration file, read as literals (nothing is run)."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("revision", "down_revision", "depends_on", "branch_labels"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    if not isinstance(found.get("revision"), str) or found.get("depends_on") or found.get("branch_labels"):
        return None  # something only Alembic reads right
    down = found.get("down_revision")
    downs = () if down is None else (down,) if isinstance(down, str) else tuple(down)  # type: ignore[arg-type]
    return found["revision"], downs  # type: ignore[return-value]


@cache
def head_revision() -> str:
    """The revision this code needs: the one no other migration builds on."""
    revisions: set[str] = set()
    built_on: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        ids = _revision_ids(path)
        if ids is None:
            return _alembic_head()
        revisions.add(ids[0])  # type: ignore[arg-type]
        built_on.update(ids[1])
    heads = revisions - built_on
    if len(heads) != 1 or not built_on <= revisions:
        return _alembic_head()
    return heads.pop()


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory  # a history the cheap reading does not cover (start-up time)

    return ScriptDirectory.from_config(alembic_config()).get_current_head()  # type: ignore[return-value]


def current_revision() -> str | None:
    """The database's schema revision (None when it has none yet)."""
    try:
        with get_engine().connect() as connection:
            if not connection.dialect.has_table(connection, VERSION_TABLE):
                return None
            rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
            if len(rows) <= 1:
                return rows[0] if rows else None
            # Several rows mean several heads: Alembic says what that is (it raises on it).
            from alembic.runtime.migration import MigrationContext  # a branching history only (start-up time)

            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database {_safe(get_settings().effective_database_url)}") from exc


def upgrade_schema(revision: str = "head") -> None:
    from alembic import command  # Alembic's runtime only to migrate (start-up time)

    url = get_settings().effective_database_url
    try:
        with get_engine().begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database {_safe(url)}") from exc
    _checked.discard((os.getpid(), url))


def downgrade_schema(revision: str) -> None:
    from alembic import command  # Alembic's runtime only to migrate (start-up time)

    url = get_settings().effective_database_url
    with get_engine().begin() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    _checked.discard((os.getpid(), url))


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_schema() -> None:
    """Make sure the schema is current before a command touches the database (once per process)."""
    settings = get_settings()
    url = settings.effective_database_url
    key = (os.getpid(), url)
    if key in _checked:
        return
    if url.startswith("sqlite"):
        path = make_url(url).database
        lock = Path(path + ".migrate.lock") if path and path != ":memory:" else settings.data_dir / "migrate.lock"
        # Two processes starting at once (worker and beat) must not both migrate.
        with _file_lock(lock):
            if current_revision() != head_revision():
                upgrade_schema()
    else:
        current, head = current_revision(), head_revision()
        if current != head:
            raise SchemaOutdated(
                f"database schema is at {current or 'nothing'}, this version needs {head}: "
                "run `halo-reconciler db upgrade`"
            )
    _checked.add(key)

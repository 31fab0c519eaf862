"""Suite-wide fixtures.

* Every test starts with a clean environment: no ``HALO_*``, ``DATABASE_URL`` or ``BROKER_URL`` from
  the developer's shell, a fresh data directory, fresh settings, engine and structlog state.
* ``postgres_server`` and ``redis_server`` are real throw-away servers on loopback, started once per
  session; ``postgres_url`` gives each test its own database and ``redis_url`` a flushed server.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import structlog

from tests.utils.servers import PostgresServer, RedisServer, start_postgres, start_redis
from worker import stopping as terminate
from worker.stopping import interrupt_on_terminate

_database_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM or SIGHUP stops the run as Ctrl-C does: pytest tears every fixture down, so the servers
    the session started (each in a process group of its own) stop with it (``worker.stopping``)."""
    interrupt_on_terminate()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """A stop asked for during a test whose code swallowed the interrupt (the command line run in-process:
    click makes it an exit 1) still ends the session, after that test."""
    yield
    if terminate.requested is not None:
        item.session.shouldstop = f"stopped by {terminate.requested.name}"


def _reset_process_state() -> None:
    from worker import db, hooks, wiring
    from worker.config import get_settings

    get_settings.cache_clear()
    db.reset_engine()
    wiring.close_halo_client()
    hooks.reset()
    from worker import coordination
    from worker.celery_app import follow_settings

    from worker.config import ConfigError

    coordination.reset_client()
    try:
        follow_settings()
    except ConfigError:
        pass  # a test that set a bad variable on purpose; monkeypatch restores the environment next
    get_settings.cache_clear()  # follow_settings read them; fixtures may still change the environment
    structlog.reset_defaults()
    from reconciler import logs

    logs.configure_on_first_use(None)  # a listing run in-process deferred its logging configuration


# The slowest folders first (the short soak and the reliability suite wait on timers for minutes):
# with the suite in two processes (pytest-xdist, ``--dist worksteal``), the quick unit tests then fill
# the end, rather than one process finishing a long test alone. Within a folder the order is kept.
_FOLDER_ORDER = ("soak", "reliability", "e2e", "browser", "integration", "verdicts", "client", "unit")


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        parts = Path(str(item.path)).relative_to(ROOT).parts
        folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""
        return _FOLDER_ORDER.index(folder) if folder in _FOLDER_ORDER else len(_FOLDER_ORDER)

    items.sort(key=rank)  # stable: a folder's modules and tests keep their order


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("HALO_") or name in {"DATABASE_URL", "BROKER_URL", "XDG_DATA_HOME"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HALO_RECONCILER_DATA_DIR", str(tmp_path / "halo-data"))
    _reset_process_state()
    yield
    _reset_process_state()
    try:
        from worker.coordination import stop_embedded_server
        from worker.config import load_settings

        stop_embedded_server(load_settings())
    except Exception:
        pass


def embedded_leftovers(root: Path) -> list[tuple[int, str]]:
    """Embedded Valkey servers (by their working directory, which ``--dir`` sets) and their watchers
    (by their arguments) whose data directory lies under ``root``: ``(pid, command line)``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            command = b" ".join(argv).decode(errors="replace")
            if "valkey-server" in command or "redis-server" in command:
                where = os.readlink(entry / "cwd")
            elif "worker.embedded_watch" in command:
                where = command.split("worker.embedded_watch", 1)[1].split()[0]
            else:
                continue
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if Path(where).resolve().is_relative_to(root) or where.startswith(str(root)):
            found.append((int(entry.name), command))
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_embedded_outlives_the_suite(tmp_path_factory):
    """Set up first, torn down last: every embedded Valkey server a test (or a command it ran) started
    in a data directory of this session, and every watcher, must be gone when the session ends."""
    root = tmp_path_factory.getbasetemp().resolve()
    yield
    from tests.utils.waiting import WaitTimedOut, wait_until

    try:  # a server stopped a moment ago takes its watcher with it within a second or two
        wait_until(lambda: not embedded_leftovers(root), timeout=15, interval=0.25, what="embedded servers exiting")
    except WaitTimedOut:
        left = embedded_leftovers(root)
        for pid, _ in left:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        pytest.fail(f"{len(left)} embedded Valkey process(es) outlived the test suite (now killed): "
                    + "; ".join(command for _, command in left), pytrace=False)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> PostgresServer:
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return postgres_server.create_database(f"test_{os.getpid()}_{next(_database_numbers)}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    server = start_redis(tmp_path_factory.mktemp("valkey"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    import redis

    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
def embedded_db():
    """The embedded SQLite database of this test's data directory, migrated."""
    from worker import db

    db.ensure_schema()
    return db


ROOT = Path(__file__).resolve().parents[1]

"""The command line imports what a command needs and no more (its start-up time: docs/BENCHMARKS.md,
"cli"), and the cheap schema check says what Alembic says. Modules are counted, not timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker import db

pytestmark = pytest.mark.integration  # fresh interpreters on the embedded SQLite

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("alembic", "mako", "kombu", "celery", "redis", "httpx", "apprise", "argon2", "prometheus_client",
         "starlette", "uvicorn", "jinja2")
PROBE = """
import json, sys
from worker.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _run(tmp_path: Path, *argv: str) -> tuple[str, set[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    env["HALO_RECONCILER_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    return done.stdout, {name.split(".")[0] for name in report["modules"]}


def test_help_imports_neither_the_database_nor_the_settings(tmp_path):
    out, modules = _run(tmp_path, "--help")

    assert "practices" in out and "reconcile" in out
    assert not modules & {*HEAVY, "sqlalchemy", "sqlmodel", "models", "pydantic_settings", "structlog"}


def test_practices_list_imports_only_the_database(tmp_path):
    _run(tmp_path, "db", "upgrade")  # the embedded schema exists: the listing only checks its version

    out, modules = _run(tmp_path, "practices", "list", "--json")

    assert json.loads(out) == []
    assert {"sqlalchemy", "sqlmodel", "models"} <= modules
    assert not modules & {*HEAVY, "structlog", "rich"}  # a listing that logs nothing configures no logging


def test_a_fresh_embedded_database_is_still_migrated_on_first_use(tmp_path):
    out, modules = _run(tmp_path, "tickets", "list", "--json")

    assert json.loads(out) == []
    assert "alembic" in modules  # the first command migrates; the next ones only read the version
    assert _run(tmp_path, "db", "current", "--json")[0].count('"up_to_date": true') == 1


def test_the_cheap_head_revision_is_alembics():
    assert db.head_revision() == db._alembic_head()


def test_the_version_row_is_read_as_alembic_reads_it(sqlite_url, monkeypatch):
    from alembic.runtime.migration import MigrationContext  # the reference the cheap reading must match

    from worker.config import get_settings

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    db.reset_engine()
    assert db.current_revision() is None  # no version table yet
    db.upgrade_schema("0003")
    with db.get_engine().connect() as connection:
        assert db.current_revision() == MigrationContext.configure(connection).get_current_revision() == "0003"
    db.upgrade_schema()
    assert db.current_revision() == db.head_revision()
    db.downgrade_schema("base")
    assert db.current_revision() is None  # the table is left, empty


WORKER_PROBE = """
import json, os, sys
from celery.signals import worker_ready

target = sys.argv[1]

@worker_ready.connect
def report(**_):
    with open(target + ".tmp", "w") as out:
        json.dump(sorted(sys.modules), out)
    os.replace(target + ".tmp", target)

from worker.cli import run
sys.argv = ["halo-reconciler", "worker", *sys.argv[2:]]
run()
"""


def test_the_workers_parent_holds_no_console_stack(tmp_path, redis_url):
    """`halo-reconciler worker` writing JSON lines: its parent (which every child maps) imports
    neither rich (structlog's and httpx's optional extra) nor Celery's REPL (prompt_toolkit)."""
    from tests.utils.waiting import wait_until
    from tests.utils.workers import stop_workers
    from worker.processes import start_in_new_group

    modules_file, log = tmp_path / "modules.json", tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({"BROKER_URL": redis_url, "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data"),
                "HALO_RECONCILER_LOG_FORMAT": "json"})
    proc = start_in_new_group([sys.executable, "-c", WORKER_PROBE, str(modules_file), "--concurrency", "1",
                               "--without-heartbeat", "--without-gossip", "--without-mingle"],
                              cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_until(modules_file.exists, timeout=60, interval=0.2,
                   what="the worker ready", log=log)
    finally:
        stop_workers([proc])
    modules = {name.split(".")[0] for name in json.loads(modules_file.read_text())}

    assert {"celery", "structlog", "httpx", "sqlalchemy", "tasks"} <= modules  # the real worker, ready
    assert not modules & {"rich", "prompt_toolkit", "click_repl"}

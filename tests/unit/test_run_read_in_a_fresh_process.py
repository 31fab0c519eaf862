"""A worker process whose first statement is a run's read: the practice it builds is readable.

The run's read is a Core SELECT and its ``Practice`` is built as the ORM's loading builds one
(``SqlStore.practice_for_run``); in a fresh process no ORM object exists yet, so nothing else has
configured the mappers. Run in a new interpreter: this suite's process has configured them long ago."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    from datetime import UTC, datetime
    from sqlalchemy import insert
    from models import Practice
    from reconciler.adapters.store import SqlStore
    from worker import db

    db.upgrade_schema()
    now = datetime.now(UTC)
    with db.get_engine().begin() as connection:
        [pid] = connection.execute(insert(Practice).returning(Practice.id), [{
            "pms_type": "Zedmed", "pms_id": "Z1", "halo_guid": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            "practice_name": "Clinic", "identifiers": {}, "identifiers_normalised": {}, "state": "active",
            "backoff_attempts": 0, "created_at": now, "updated_at": now, "version": 1}]).scalars().all()
    with db.new_session() as session:
        practice, left, own, wide, guard, _ = SqlStore(session).practice_for_run(pid, switches_since=now)
    print(practice.halo_guid, practice.next_attempt_at, practice.version, left, own, wide, *guard)
""")


def test_the_first_read_of_a_fresh_process_builds_a_readable_practice(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"}
    done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["3f2504e0-4f89-41d3-9a0c-0305e82c3301", "None", "1", "{}", "False", "False", "0", "False"]

"""A real worker on Celery's threads pool (``halo-reconciler worker``'s default): many runs at once in
one process share its clients (the engine, the Redis client, the Halo client), and each run still
counts only its own Halo calls and logs only its own context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from models import Action, PmsType, Reconciliation
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers, wait_until_idle
from worker import admin, db

pytestmark = pytest.mark.integration

PRACTICES = 12


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _rows(ids: list[int]) -> list[Reconciliation]:
    with db.new_session() as session:
        return list(session.exec(select(Reconciliation).where(Reconciliation.practice_id.in_(ids),
                                                              Reconciliation.actor.is_(None))).all())


def test_a_threads_worker_runs_reconciliations_at_once_each_with_its_own_counts(stack, tmp_path):
    sim, env = stack
    ids, moved = [], {}
    for i in range(PRACTICES):
        sim.add_practice(pms_type=PmsType.ZEDMED, pms_id=f"T{i}", practice_name=f"Thread Clinic {i}")
        ids.append(admin.onboard("Zedmed", f"T{i}").id)
    for i in range(0, PRACTICES, 3):
        moved[ids[i]] = sim.change_guid(PmsType.ZEDMED, f"T{i}")
    sim.reset_counters()
    sim.set_latency(0.3)  # every Halo call waits: the runs overlap in the worker's threads

    [worker] = start_workers({**env, "HALO_RECONCILER_LOG_LEVEL": "INFO"}, tmp_path, count=1, pool="threads",
                             concurrency=8, ready=True)
    try:
        assert _children(worker.pid) == []  # one process: the runs are threads
        for practice_id in ids:
            admin.enqueue_reconcile(practice_id)
        wait_until(lambda: len(_rows(ids)) >= PRACTICES, timeout=120, what="every practice reconciled",
                   log=worker.log)
        wait_until_idle(env["BROKER_URL"])
    finally:
        stop_workers([worker])

    rows = {row.practice_id: row for row in _rows(ids)}
    assert len(rows) == PRACTICES
    for practice_id in ids:
        expected = Action.SWITCHED if practice_id in moved else Action.MARKED_VERIFIED
        assert rows[practice_id].action == expected, rows[practice_id]
        if practice_id in moved:
            assert rows[practice_id].new_guid == moved[practice_id]
    # Each Halo call is counted by the one run that made it, however the runs overlapped.
    assert sum(row.halo_calls for row in rows.values()) == sim.call_count()
    # Every run's log line names its own practice (structlog's contextvars are per thread).
    finished = [json.loads(line) for line in worker.log.read_text().splitlines()
                if line.startswith("{") and '"reconcile_finished"' in line]
    assert len(finished) == PRACTICES
    for line in finished:
        assert rows[line["practice_id"]].halo_calls == line["halo_calls"]
        assert line["task_id"]

"""The event-driven path with real parts: Valkey, PostgreSQL, the simulator over HTTP, Celery workers.

N reports for M changed practices cost at most M Find sites calls and all M end right; reports that
name replaced GUIDs cost none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlmodel import select

from models import PmsType, Practice, Reconciliation
from worker import admin, db
from worker.celery_app import follow_settings
from worker.config import get_settings
from worker.simulator import Simulator, serve

pytestmark = pytest.mark.integration

KEY = "storm-test-key-41d9"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(monkeypatch, tmp_path, redis_url, postgres_url):
    """Simulator on loopback, PostgreSQL migrated, environment pointing every process at them."""
    sim = Simulator(key=KEY)
    with serve(sim, host="127.0.0.1", port=0) as server:
        env = {
            "HALO_BASE_URL": server.url,
            "HALO_SUBSCRIPTION_KEY": KEY,
            "BROKER_URL": redis_url,
            "DATABASE_URL": postgres_url,
            "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data"),
            "HALO_RECONCILER_LOG_FORMAT": "json",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        db.reset_engine()
        follow_settings()
        db.upgrade_schema()
        yield sim, env


def start_workers(env: dict[str, str], tmp_path: Path, count: int = 2) -> list[subprocess.Popen]:
    procs = []
    for i in range(count):
        log = open(tmp_path / f"worker{i}.log", "wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "prefork", "--concurrency", "2",
             "--queues", "events,reconcile,sweep,deliver", "--hostname", f"w{i}@%h", "--without-heartbeat",
             "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_until(predicate, timeout: float = 90.0, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def guids_now(ids: list[int]) -> dict[int, str]:
    with db.new_session() as session:
        rows = session.exec(select(Practice).where(Practice.id.in_(ids))).all()
        return {p.id: p.halo_guid for p in rows}


def test_storm_costs_one_find_sites_call_per_changed_practice(stack, tmp_path):
    from worker.hooks import report_forbidden

    sim, env = stack
    changed, steady = 12, 4
    ids, old = [], {}
    for i in range(changed + steady):
        sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id=f"BP{i}", practice_name=f"Clinic {i}")
        out = admin.onboard("BestPractice", f"BP{i}")
        ids.append(out.id)
        old[out.id] = out.halo_guid
    new = {ids[i]: sim.change_guid(PmsType.BEST_PRACTICE, f"BP{i}") for i in range(changed)}
    onboarding_calls = sim.call_count("find_sites")

    workers = start_workers(env, tmp_path)
    try:
        reports = [old[ids[i % changed]] for i in range(changed * 25)]
        with ThreadPoolExecutor(8) as pool:
            taken = list(pool.map(lambda guid: report_forbidden(guid, "Forbidden"), reports))
        assert all(taken)

        assert wait_until(lambda: guids_now(list(new)) == new), "not every changed practice was switched"
        time.sleep(2)  # let any stray re-run land before counting
        assert sim.call_count("find_sites") - onboarding_calls == changed

        # 403s that still name the replaced GUIDs cost no Halo call at all.
        before = sim.call_count("find_sites")
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(lambda guid: report_forbidden(guid), [old[pid] for pid in new] * 10))
        time.sleep(3)
        assert sim.call_count("find_sites") == before

        with db.new_session() as session:
            switches = session.exec(select(Reconciliation).where(Reconciliation.action == "switched")).all()
        assert sorted(r.practice_id for r in switches) == sorted(new)
        assert guids_now(ids[changed:]) == {pid: old[pid] for pid in ids[changed:]}
    finally:
        stop_workers(workers)

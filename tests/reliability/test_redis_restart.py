"""Redis (broker and coordination store) stopped in the middle of a storm and started again empty.

While it is down the application's hook answers False within its timeout and never raises; when it
is back the worker reconnects by itself, new reports are handled again (the GUID index rebuilds
from the database), and the next sweep repairs the practices whose reports the outage dropped.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from models import Action, PmsType, Practice, Reconciliation
from tests.integration.conftest import use_environment
from tests.reliability.conftest import count, onboard_fleet, rows
from tests.utils.servers import start_redis
from tests.utils.waiting import wait_until
from tests.utils.workers import start_beats, start_workers, stop_workers
from worker.hooks import report_forbidden

pytestmark = pytest.mark.integration

TIMEOUT = 0.5  # HALO_RECONCILER_REPORT_TIMEOUT_SECONDS


@pytest.fixture
def redis_server(tmp_path):
    """This test's own server, so stopping it disturbs no other test."""
    server = start_redis(tmp_path / "own-valkey")
    yield server
    server.stop()


def guids(ids):
    return {p.id: p.halo_guid for p in rows(Practice, Practice.id.in_(ids))}


def timed_report(guid: str) -> tuple[bool, float]:
    started = time.perf_counter()
    taken = report_forbidden(guid, "Forbidden")
    return taken, time.perf_counter() - started


def test_redis_restart_during_a_storm(stack, redis_server, tmp_path, monkeypatch, observe):
    sim, env = stack
    env = {**env, "HALO_RECONCILER_REPORT_TIMEOUT_SECONDS": str(TIMEOUT),
           "HALO_RECONCILER_SWEEP_STALE_AFTER_SECONDS": "1", "HALO_RECONCILER_SWEEP_INTERVAL_SECONDS": "2"}
    use_environment(monkeypatch, env)  # this process's hook is bounded by the same timeout
    ids, old = onboard_fleet(sim, PmsType.D4W, [f"D{i}" for i in range(30)])
    before_outage, during_outage, steady = ids[:10], ids[10:20], ids[20:]
    new = {pid: sim.change_guid(PmsType.D4W, f"D{i}") for i, pid in enumerate(ids[:20])}

    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    beats = []
    try:
        with ThreadPoolExecutor(4) as pool:
            assert all(t for t, _ in pool.map(timed_report, [old[pid] for pid in before_outage] * 5))
        wait_until(lambda: guids(before_outage) == {pid: new[pid] for pid in before_outage})

        redis_server.stop()
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(timed_report, [old[pid] for pid in during_outage] * 20))
        durations = [d for _, d in outcomes]
        assert not any(t for t, _ in outcomes)  # refused, not queued somewhere that does not exist
        assert max(durations) < TIMEOUT * 2 + 0.5  # bounded by the timeout (slack for a noisy machine)

        redis_server.start()  # empty: the queue, the GUID index and every pending mark are gone
        restarted_at = time.monotonic()
        first = during_outage[0]
        wait_until(lambda: report_forbidden(old[first], "Forbidden"), timeout=30, interval=0.5)
        wait_until(lambda: guids([first]) == {first: new[first]}, timeout=60, what="work resuming after the restart")
        resumed = time.monotonic() - restarted_at

        beats = start_beats(env, tmp_path)
        wait_until(lambda: guids(during_outage) == {pid: new[pid] for pid in during_outage},
                   timeout=90, what="the sweep repairing what the outage dropped")
        repaired = time.monotonic() - restarted_at
        assert guids(steady) == {pid: old[pid] for pid in steady}
        for pid in new:
            assert count(Reconciliation, Reconciliation.practice_id == pid, Reconciliation.action == Action.SWITCHED) == 1
        observe(fault="Redis stopped mid-storm, restarted empty",
                how="30 practices, 20 moved; 10 switched before the outage; 200 reports for the other 10 "
                    "from 4 threads while Redis was down; then Redis restarted with no data and beat started",
                observed=f"every report during the outage returned False in at most {max(durations) * 1000:.0f} ms "
                         f"(median {statistics.median(durations) * 1000:.1f} ms, timeout {TIMEOUT * 1000:.0f} ms); "
                         f"the worker reconnected and a new report was handled {resumed:.1f} s after the restart; "
                         f"the sweep repaired the other 9 by {repaired:.1f} s; each of the 20 switched once, "
                         "the 10 unchanged untouched")
    finally:
        stop_workers(beats + [worker])

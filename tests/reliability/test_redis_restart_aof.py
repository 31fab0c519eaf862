"""Redis (broker and coordination store) restarted in the middle of runs *with its data*, as production's
append-only file brings it back (issue 24, High): before, a run that met the outage asked Celery to retry
through the broker that was down, so the message was dropped; its claim's release failed too, and the
append-only file restored the claim and the queued marks, so the practice was stranded for about 30
minutes (``reconcile --now`` refused: "another reconciliation ... is running").

Real parts: Valkey with ``appendonly yes``, PostgreSQL, the simulator over HTTP (slow, so runs are in
flight when Valkey stops) and one real worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from models import Action, PmsType, Practice, Reconciliation
from reconciler.adapters.coordination import keys
from tests.integration.conftest import use_environment
from tests.reliability.conftest import count, onboard_fleet, rows
from tests.utils.servers import start_redis
from tests.utils.waiting import wait_until
from tests.utils.workers import ROOT, start_workers, stop_workers
from worker.hooks import report_forbidden

pytestmark = pytest.mark.integration

LATENCY = 2.5


@pytest.fixture
def aof_redis(tmp_path):
    server = start_redis(tmp_path / "aof-valkey", appendonly=True)
    yield server
    server.stop()


def current(ids):
    return {p.id: p.halo_guid for p in rows(Practice, Practice.id.in_(ids))}


def test_redis_restarting_with_its_data_mid_run_strands_no_practice(stack, aof_redis, tmp_path, monkeypatch,
                                                                     observe):
    sim, env = stack
    env = {**env, "BROKER_URL": aof_redis.url, "HALO_RECONCILER_REPORT_TIMEOUT_SECONDS": "1"}
    use_environment(monkeypatch, env)
    ids, old = onboard_fleet(sim, PmsType.ZEDMED, [f"ZM{n}" for n in range(6)])
    new = {pid: sim.change_guid(PmsType.ZEDMED, f"ZM{n}") for n, pid in enumerate(ids)}
    sim.set_latency(LATENCY)
    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    client = redis.Redis.from_url(aof_redis.url)
    try:
        for pid in ids:
            assert report_forbidden(old[pid], "Forbidden")
        # Runs in flight: claimed, waiting on Halo's slow answer.
        wait_until(lambda: any(client.scan_iter(match=keys.processing("*"))), timeout=60, interval=0.05,
                   what="a run in flight", log=worker.log)
        client.close()
        aof_redis.stop()
        time.sleep(LATENCY + 5)  # the fault's length: the in-flight answers arrive while the store is away
        aof_redis.start()  # with its data: the claims, queued marks and messages come back
        restarted = time.monotonic()
        for pid in ids:  # the application reports again, as it would
            wait_until(lambda pid=pid: report_forbidden(old[pid], "Forbidden"), timeout=30, interval=0.2)
        wait_until(lambda: current(ids) == new, timeout=90, interval=0.2,
                   what="every practice switched after Valkey came back with its data", log=worker.log)
        took = time.monotonic() - restarted
        for pid in ids:
            assert count(Reconciliation, Reconciliation.practice_id == pid, Reconciliation.action == Action.SWITCHED) == 1
        sim.set_latency(0)
        ran = subprocess.run([sys.executable, "-m", "worker.cli", "reconcile", str(ids[0]), "--now", "--json"],
                             cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr  # no claim left behind
        observe(fault="Redis restarted mid-run with its data (append-only file)",
                how=f"6 moved practices reported, Halo latency {LATENCY} s; Valkey stopped while runs waited on "
                    "Halo and started again with its data; the 6 reported again",
                observed=f"the runs that met the outage waited for the store in their worker (no retry through "
                         f"the broker that was down) and finished; all 6 switched {took:.1f} s after the restart, "
                         "each once; `reconcile --now` then ran at once",
                figures={"lost": 0, "unreconciled": 0, "switched_twice": 0, "tickets_twice": 0,
                         "calls": f"{sim.call_count('find_sites')} Find sites", "blocked": "n/a"})
    finally:
        stop_workers([worker])

"""A whole worker host killed mid-run no longer leaves its practice deaf for about 30 minutes (issue 24,
Medium): the claim's lock lives a minute (15 s here) and only a live run renews it, so reports to a new worker switch
the practice once the dead run's minute is up, with no operator.

Real parts: Valkey, PostgreSQL, the simulator over HTTP, two worker processes (the doomed one SIGKILLed
with its pool, as a host that dies).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from models import PmsType, Practice
from reconciler.adapters.coordination import keys
from tests.integration.conftest import use_environment
from tests.reliability.conftest import onboard_fleet, rows
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers
from worker import wiring
from worker.hooks import report_forbidden

pytestmark = pytest.mark.integration

# The claim's lock, shortened from its default minute (HALO_RECONCILER_CLAIM_LOCK_SECONDS) so the test waits
# seconds: what is proven (the dead run's claim runs out by itself, no operator) does not depend on its length.
LOCK = 15


def test_reports_after_a_worker_host_died_mid_run_switch_the_practice(stack, tmp_path, observe, redis_url,
                                                                      monkeypatch):
    sim, env = stack
    env = {**env, "HALO_RECONCILER_CLAIM_LOCK_SECONDS": str(LOCK)}
    use_environment(monkeypatch, env)
    assert wiring.work_queue().lock_seconds == LOCK
    ids, old = onboard_fleet(sim, PmsType.ZEDMED, ["ZM1"])
    pid = ids[0]
    new = sim.change_guid(PmsType.ZEDMED, "ZM1")
    sim.set_latency(30)
    client = redis.Redis.from_url(redis_url)
    [doomed] = start_workers(env, tmp_path, count=1, name="doomed", ready=True)
    try:
        assert report_forbidden(old[pid], "Forbidden")
        wait_until(lambda: client.exists(keys.processing(pid)), timeout=60, interval=0.05, what="the run in flight",
                   log=doomed.log)
        os.killpg(doomed.pid, signal.SIGKILL)  # main process and pool together: nothing releases the claim
        killed = time.monotonic()
        doomed.wait(timeout=30)
    finally:
        stop_workers([doomed])
    left = client.ttl(keys.processing(pid))
    assert 0 < left <= LOCK  # was about 1,830 s
    sim.set_latency(0)
    [heir] = start_workers(env, tmp_path, count=1, name="heir", ready=True)
    try:
        def reported_and_switched() -> bool:
            report_forbidden(old[pid], "Forbidden")  # the application keeps meeting 403s
            return rows(Practice, Practice.id == pid)[0].halo_guid == new

        wait_until(reported_and_switched, timeout=150, interval=1.0,
                   what="the practice switched by a new worker once the dead run's lock ran out", log=heir.log)
        took = time.monotonic() - killed
        observe(fault="a whole worker host killed mid-run, reports keep coming",
                how="a run in flight (Halo latency 30 s); the worker's process group SIGKILLed; a new worker; "
                    "the application reports once a second",
                observed=f"the dead run's claim had {left} s left (it was about 1,830 s); the new worker switched "
                         f"the practice {took:.0f} s after the kill, with no operator",
                figures={"lost": 0, "unreconciled": 0, "switched_twice": 0, "tickets_twice": 0,
                         "calls": f"{sim.call_count('find_sites')} Find sites", "blocked": "n/a"})
    finally:
        client.close()
        stop_workers([heir])

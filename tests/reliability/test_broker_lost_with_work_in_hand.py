"""Valkey stopped while a worker holds unacknowledged messages (two reconciliations running, room
for more: a BRPOP waiting), then started again: the worker survives and reconnects.

Found by the chaos soak (seeds 1 and 7, full mix; ``worker/celery_app.py``
``_released_transport_is_a_connection_error``): on Celery/kombu 5.7 the clean-up after the lost
connection restored the unacknowledged messages through a released transport, and each running task
acknowledged through it when it finished; both raised AttributeError and the worker exited with
"Unrecoverable error".
"""

from __future__ import annotations

import pytest

from models import Action, PmsType, Practice, Reconciliation
from tests.reliability.conftest import count, onboard_fleet, rows
from tests.utils.servers import start_redis
from tests.utils.waiting import log_has, wait_until
from tests.utils.workers import start_workers, stop_workers
from tests.integration.conftest import use_environment
from soak.proxy import StallingProxy
from worker.hooks import report_forbidden
from worker.simulator.faults import Fault

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path):
    server = start_redis(tmp_path / "own-valkey", appendonly=True)
    yield server
    server.stop()


@pytest.fixture
def proxy(own_redis):
    """A TCP proxy in front of Valkey (as a load balancer or a service mesh puts one): while Valkey is
    down it takes a connection and closes it, where Valkey's own port would refuse it."""
    relay = StallingProxy(own_redis.port)
    yield relay
    relay.close()


def test_a_worker_holding_work_survives_valkey_going_away_and_coming_back(stack, own_redis, proxy, tmp_path,
                                                                          monkeypatch, observe):
    sim, env = stack
    env = {**env, "BROKER_URL": proxy.url, "HALO_RECONCILER_TASK_TIME_LIMIT_SECONDS": "32",
           "HALO_RECONCILER_HALO_MAX_ATTEMPTS": "1", "HALO_RECONCILER_HALO_TIMEOUT_SECONDS": "6",
           "HALO_RECONCILER_BROKER_VISIBILITY_TIMEOUT_SECONDS": "63"}
    use_environment(monkeypatch, env)
    ids, old = onboard_fleet(sim, PmsType.ZEDMED, ["Z1", "Z2"])
    new = {pid: sim.change_guid(PmsType.ZEDMED, f"Z{i + 1}") for i, pid in enumerate(ids)}
    for i in range(2):  # each run's Find sites call held 4 s: the messages are in hand, unacknowledged
        sim.inject(Fault("latency", endpoint="find_sites", pms_id=f"Z{i + 1}", delay=4.0, times=1))
    [worker] = start_workers(env, tmp_path, count=1, concurrency=4, ready=True)
    try:
        before = sim.call_count("find_sites")
        for pid in ids:
            assert report_forbidden(old[pid], "Forbidden")
        wait_until(lambda: sim.call_count("find_sites") - before == 2, timeout=30)
        own_redis.stop()
        wait_until(log_has(worker.log, "Connection to broker lost"), timeout=30, log=worker.log)
        own_redis.start()
        # It reconnects (a second "Connected to") instead of exiting; the work it held ends right.
        wait_until(lambda: worker.poll() is not None or worker.log.read_text().count("Connected to") >= 2,
                   timeout=60, log=worker.log)
        assert worker.poll() is None, worker.log.read_text()[-3000:]
        wait_until(lambda: {p.id: p.halo_guid for p in rows(Practice)} == new, timeout=120, log=worker.log)
        # Both running tasks finished after the reconnection and acknowledged through the lost
        # connection's channel: that fails as a connection error (the broker hands them out again
        # after the visibility timeout), and the worker keeps running.
        wait_until(lambda: worker.poll() is not None or worker.log.read_text().count("Couldn't ack") >= 2,
                   timeout=60, log=worker.log)
        assert worker.poll() is None, worker.log.read_text()[-3000:]
        for pid in ids:
            assert count(Reconciliation, Reconciliation.practice_id == pid, Reconciliation.action == Action.SWITCHED) == 1
        observe(fault="Valkey stopped and started while a worker held two running reconciliations",
                how="2 moved practices reported; Valkey (append-only file on) stopped while Halo held both "
                    "Find sites calls, then started again",
                observed="the worker logged the lost connection, reconnected and kept running; both runs "
                         "finished, their acknowledgements failed as connection errors (redelivered after the "
                         "visibility timeout); both practices switched once")
    finally:
        stop_workers([worker])

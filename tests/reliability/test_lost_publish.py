"""No queued mark outlives its message: a publisher killed between the mark and the publish, and a
sweep whose publish fails.

Before, the practice's queued mark lived a fixed hour from the moment the report script (or the
sweep's ``add``) set it: a publisher that died before the broker had the message left every later
report folded into a task that did not exist. Now the mark is pending, for a few seconds past the
publish bound, until the publisher confirms the publish; a failed publish forgets it at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from kombu.exceptions import OperationalError

from models import Action, GuidHistory, PmsType, Practice, Reconciliation
from reconciler.adapters.coordination import keys
from tests.reliability.conftest import count, onboard_fleet
from tests.reliability.publisher_child import READY
from tests.utils.waiting import wait_until
from tests.utils.workers import ROOT, start_workers, stop_workers, wait_until_idle
from worker import publishing, wiring
from worker.config import get_settings
from worker.hooks import report_forbidden
from worker.processes import start_in_new_group, stop_process_group

pytestmark = pytest.mark.integration


def kill_between_mark_and_publish(env: dict[str, str], *args: str) -> None:
    """Run ``publisher_child`` as a real process and SIGKILL it once its publish has begun."""
    child = start_in_new_group([sys.executable, "-m", "tests.reliability.publisher_child", *args], cwd=ROOT,
                               env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().decode().strip() == READY  # the mark is set, the publish not sent
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop_process_group(child, timeout=5)


def mark(client: redis.Redis, practice_id: int) -> tuple[bytes | None, int]:
    return client.get(keys.dirty(practice_id)), client.ttl(keys.dirty(practice_id))


def test_a_publisher_killed_between_the_script_and_the_publish_swallows_no_later_report(stack, tmp_path, observe):
    sim, env = stack
    [pid], guids = onboard_fleet(sim, PmsType.ZEDMED, ["ZM1"])
    new = sim.change_guid(PmsType.ZEDMED, "ZM1")
    before = sim.call_count("find_sites")
    client = redis.Redis.from_url(env["BROKER_URL"])
    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    try:
        killed_at = time.monotonic()
        kill_between_mark_and_publish(env, "report", guids[pid])
        value, ttl = mark(client, pid)
        bound = publishing.hook_bound(get_settings().report_timeout_seconds).mark_seconds
        assert value is not None and b"|p|" in value and 0 < ttl <= bound  # pending, not an hour
        # Reports inside the pending window fold into the publish that was on its way; the first one
        # after it publishes again. (Before: folded for 3,600 s.)
        wait_until(lambda: not client.exists(keys.dirty(pid)), timeout=bound * 3, interval=0.2,
                   what="the dead publisher's pending mark expiring")
        assert report_forbidden(guids[pid], "Forbidden")
        wait_until(lambda: count(Practice, Practice.id == pid, Practice.halo_guid == new) == 1, timeout=60)
        recovered = time.monotonic() - killed_at
        wait_until_idle(env["BROKER_URL"])
        switches = count(Reconciliation, Reconciliation.practice_id == pid, Reconciliation.action == Action.SWITCHED)
        assert switches == 1 and count(GuidHistory, GuidHistory.practice_id == pid) == 2
        calls = sim.call_count("find_sites") - before
        assert calls == 1  # one run answered the report: nothing doubled
        observe(fault="publisher SIGKILLed between the report script and the publish",
                how="a real process ran report_forbidden with a publish that hangs; SIGKILL once the script had "
                    "set the queued mark; then one more report, a worker running",
                observed=f"the mark was pending with {ttl} s left (bound {bound} s), expired, the next report "
                         f"published; the practice switched {recovered:.1f} s after the kill",
                figures={"reports lost": 0, "practices left unreconciled": 0, "GUIDs switched twice": 0,
                         "tickets opened twice": 0, "Halo calls": f"{calls} Find sites",
                         "longest block": "n/a (the killed process was the publisher)"})
    finally:
        stop_workers([worker])
        client.close()


def test_a_failed_sweep_publish_and_a_killed_sweep_leave_no_mark_behind(stack, tmp_path, observe, monkeypatch):
    sim, env = stack
    ids, guids = onboard_fleet(sim, PmsType.ZEDMED, ["ZM1", "ZM2"])
    new = {pid: sim.change_guid(PmsType.ZEDMED, pms_id) for pid, pms_id in zip(ids, ["ZM1", "ZM2"])}
    before = sim.call_count("find_sites")
    client = redis.Redis.from_url(env["BROKER_URL"])

    # 1. The sweep's publish fails (the broker refuses it): the mark it set is taken back at once.
    from reconciler.usecases.sweep import enqueue_planned, plan
    from reconciler.adapters.store import SqlStore
    from datetime import UTC, datetime, timedelta
    from worker import db

    def refused(practice_id, trigger):
        raise OperationalError("Error 111 connecting to the broker. Connection refused.")

    with db.new_session() as session, pytest.raises(OperationalError):
        enqueue_planned(plan(SqlStore(session), now=datetime.now(UTC), older_than=timedelta(0)),
                        queue=wiring.work_queue(), publish=refused)
    assert not client.exists(keys.dirty(ids[0]))

    # 2. A sweep process killed between its add and its publish: a pending mark, gone in seconds.
    kill_between_mark_and_publish(env, "sweep")
    value, ttl = mark(client, ids[0])
    assert value is not None and b"|p|" in value and 0 < ttl <= publishing.WORKER.mark_seconds

    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    try:
        started = time.monotonic()
        wait_until(lambda: not client.exists(keys.dirty(ids[0])), timeout=publishing.WORKER.mark_seconds * 3,
                   interval=0.5, what="the killed sweep's pending mark expiring")
        for pid in ids:
            assert report_forbidden(guids[pid], "Forbidden")
        wait_until(lambda: all(count(Practice, Practice.id == pid, Practice.halo_guid == new[pid]) == 1 for pid in ids),
                   timeout=60)
        recovered = time.monotonic() - started
        wait_until_idle(env["BROKER_URL"])
        for pid in ids:
            assert count(Reconciliation, Reconciliation.practice_id == pid, Reconciliation.action == Action.SWITCHED) == 1
        calls = sim.call_count("find_sites") - before
        observe(fault="sweep publish failed; sweep process SIGKILLed between add and publish",
                how="enqueue_planned with a publish raising kombu's OperationalError; then a real process "
                    "sweeping with a publish that hangs, SIGKILLed; then one report per practice",
                observed=f"the failed publish forgot its mark at once; the killed one's pending mark "
                         f"({ttl} s left, bound {publishing.WORKER.mark_seconds} s) expired; both practices "
                         f"switched {recovered:.1f} s after the worker started",
                figures={"reports lost": 0, "practices left unreconciled": 0, "GUIDs switched twice": 0,
                         "tickets opened twice": 0, "Halo calls": f"{calls} Find sites", "longest block": "n/a"})
    finally:
        stop_workers([worker])
        client.close()

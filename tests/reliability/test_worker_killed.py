"""A worker killed with SIGKILL in the middle of a reconciliation (its Find sites call in flight).

The broker hands the message out again; the new delivery takes the dead one's run lock over, and
the practice ends right: the GUID switched once, the business change ticketed once.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from models import Action, GuidHistory, PmsType, Practice, Reconciliation, Ticket, TicketReason
from tests.reliability.conftest import count
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers, wait_until_idle
from worker import admin
from worker.hooks import report_forbidden
from worker.simulator.faults import Fault

pytestmark = pytest.mark.integration

SLOW_CALL = 4.0  # seconds the simulator holds each first Find sites call: the window to kill in
# The shortest limits the settings accept (worker/config.py) with one attempt per call that outlasts the
# simulator's hold: the soft limit (80 % of the time limit, whole seconds) must exceed 4 calls x 4.5 s,
# and the visibility timeout the time limit + 30. The test waits the visibility timeout out.
HALO_TIMEOUT = SLOW_CALL + 0.5
TIME_LIMIT = 24  # soft limit 19 s > 18 s
VISIBILITY = TIME_LIMIT + 31


def two_changed_practices(sim):
    """BP1 moved to a new GUID (switch); BP2 moved and changed owners (hold and ticket)."""
    ids = {}
    for pms_id, name in (("BP1", "Harbour Clinic"), ("BP2", "Hill Clinic")):
        sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id=pms_id, practice_name=name)
        out = admin.onboard("BestPractice", pms_id)
        ids[pms_id] = (out.id, out.halo_guid)
    new1 = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    new2 = sim.change_guid(PmsType.BEST_PRACTICE, "BP2")
    sim.rename(new2, "Summit Dental Pty Ltd")
    for pms_id in ids:
        sim.inject(Fault("latency", endpoint="find_sites", pms_id=pms_id, delay=SLOW_CALL, times=1))
    return ids, new1


def pool_children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return children


def received(worker) -> set[str]:
    return set(re.findall(r"halo\.reconcile_practice\[([0-9a-f-]+)\] received", worker.log.read_text()))


def assert_ended_right(ids, new1, broker_url):
    (p1, _), (p2, old2) = ids["BP1"], ids["BP2"]
    wait_until(lambda: count(Ticket, Ticket.reason == TicketReason.BUSINESS_CHANGE) >= 1
               and count(Practice, Practice.id == p1, Practice.halo_guid == new1) == 1, timeout=90)
    wait_until_idle(broker_url)  # anything still in flight lands before we count
    assert count(Reconciliation, Reconciliation.practice_id == p1, Reconciliation.action == Action.SWITCHED) == 1
    assert count(GuidHistory, GuidHistory.practice_id == p1) == 2  # the old GUID and the new, once each
    assert count(Ticket, Ticket.practice_id == p2) == 1
    assert count(Practice, Practice.id == p2, Practice.halo_guid == old2) == 1  # held, not switched


def test_a_pool_process_killed_mid_run_is_redelivered_at_once(stack, tmp_path, observe):
    sim, env = stack
    ids, new1 = two_changed_practices(sim)
    before = sim.call_count("find_sites")
    [worker] = start_workers(env, tmp_path, count=1, concurrency=2, ready=True)
    try:
        for pms_id, (_, guid) in ids.items():
            assert report_forbidden(guid, "Forbidden")
        wait_until(lambda: sim.call_count("find_sites") - before == 2, timeout=30)
        children = pool_children(worker.pid)
        assert len(children) == 2
        killed_at = time.monotonic()
        for pid in children:
            os.kill(pid, signal.SIGKILL)

        assert_ended_right(ids, new1, env["BROKER_URL"])
        settled = time.monotonic() - killed_at
        log = worker.log.read_text()  # type: ignore[attr-defined]
        assert log.count("reconcile_redelivered") == 2
        calls = sim.call_count("find_sites") - before
        assert calls == 4  # the two killed runs' calls and the two redelivered runs'
        observe(fault="pool process SIGKILLed mid-reconciliation",
                how="2 practices (1 infrastructure, 1 business change) reported; both pool processes killed "
                    f"while Halo held their Find sites calls ({SLOW_CALL:.0f} s)",
                observed=f"both redelivered at once and took their run locks over; settled {settled:.1f} s "
                         f"after the kill; {calls} Find sites calls; 1 switch, 1 ticket")
    finally:
        stop_workers([worker])


def test_a_whole_worker_killed_mid_run_is_redelivered_after_the_visibility_timeout(stack, tmp_path, observe):
    sim, env = stack
    env = {**env, "HALO_RECONCILER_TASK_TIME_LIMIT_SECONDS": str(TIME_LIMIT), "HALO_RECONCILER_HALO_MAX_ATTEMPTS": "1",
           "HALO_RECONCILER_HALO_TIMEOUT_SECONDS": str(HALO_TIMEOUT),
           "HALO_RECONCILER_BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY)}
    ids, new1 = two_changed_practices(sim)
    before = sim.call_count("find_sites")
    [doomed] = start_workers(env, tmp_path, count=1, name="doomed", concurrency=2, ready=True)
    try:
        for pms_id, (_, guid) in ids.items():
            assert report_forbidden(guid, "Forbidden")
        wait_until(lambda: sim.call_count("find_sites") - before == 2, timeout=30)
        killed_at = time.monotonic()
        os.killpg(doomed.pid, signal.SIGKILL)  # the host is gone: main process and pool together
        doomed.wait()
    finally:
        stop_workers([doomed])
    [heir] = start_workers(env, tmp_path, count=1, name="heir", concurrency=2, ready=True)
    try:
        assert_ended_right(ids, new1, env["BROKER_URL"])
        settled = time.monotonic() - killed_at
        # The same messages (task ids), not new ones: the broker redelivered what the dead host held.
        assert received(heir) == received(doomed) and len(received(heir)) == 2
        assert settled >= VISIBILITY - 1  # not before the visibility timeout: until then the message is the dead host's
        calls = sim.call_count("find_sites") - before
        observe(fault="whole worker host SIGKILLed mid-reconciliation",
                how="as above, but the worker's main process and pool killed together, a new worker started; "
                    f"visibility timeout {VISIBILITY} s",
                observed=f"redelivered to the new worker after the visibility timeout; settled {settled:.1f} s "
                         f"after the kill; {calls} Find sites calls; 1 switch, 1 ticket")
    finally:
        stop_workers([heir])

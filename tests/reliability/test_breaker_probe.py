"""The breaker probes by itself (issue 24 item 1): with nothing but a worker running (no beat, no new
report), kept work runs after Halo answers again, and a probe message that was lost is noticed.

Real parts: Valkey, PostgreSQL, the simulator over HTTP and one real worker process. The probe interval
is short (``HALO_RECONCILER_BREAKER_PROBE_SECONDS``), so the test waits seconds, not minutes; how long
the kept work took after Halo answered again is recorded, not asserted (docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from models import GuidHistory, PmsType, Practice, Ticket, TicketReason, TicketStatus, Verdict
from reconciler.adapters.coordination import keys
from tests.integration.conftest import use_environment
from tests.reliability.conftest import count, onboard_fleet, rows
from tests.utils.waiting import wait_until
from tests.utils.workers import ROOT, start_workers, stop_workers
from worker import wiring
from worker.hooks import report_forbidden
from worker.simulator.faults import Fault

pytestmark = pytest.mark.integration

PROBE_SECONDS = 2


def current(ids: list[int]) -> dict[int, str]:
    return {p.id: p.halo_guid for p in rows(Practice, Practice.id.in_(ids))}


@pytest.fixture
def probing_stack(stack, monkeypatch):
    sim, env = stack
    env = {**env, "HALO_RECONCILER_BREAKER_PROBE_SECONDS": str(PROBE_SECONDS)}
    use_environment(monkeypatch, env)
    return sim, env


def test_with_only_a_worker_kept_work_runs_once_halo_answers_again(probing_stack, tmp_path, observe, redis_url):
    sim, env = probing_stack
    ids, old = onboard_fleet(sim, PmsType.ZEDMED, [f"ZM{n}" for n in range(4)])
    new = {pid: sim.change_guid(PmsType.ZEDMED, f"ZM{n}") for n, pid in enumerate(ids)}
    sim.reset_counters()
    sim.inject(Fault("quota_exceeded"))
    client = redis.Redis.from_url(redis_url)
    [worker] = start_workers(env, tmp_path, count=1, ready=True)  # no beat: nothing else will ask
    try:
        for pid in ids:
            assert report_forbidden(old[pid], "Forbidden")
        # The first run is refused and opens the breaker; the other reports are kept; the worker's own
        # probes are refused too (two at least: the first after the probe interval, the next after twice it).
        wait_until(lambda: sim.call_count("find_sites") >= 3, timeout=60, interval=0.2,
                   what="the breaker probing by itself while the quota is out", log=worker.log)
        refused = sim.call_count("find_sites")
        assert current(ids) == old
        sim.clear_faults()  # the quota comes back
        back = time.monotonic()
        wait_until(lambda: current(ids) == new, timeout=60, interval=0.1,
                   what="every kept practice switched after the quota came back", log=worker.log)
        took = time.monotonic() - back
        for pid in ids:  # each once
            assert count(GuidHistory, GuidHistory.practice_id == pid, GuidHistory.guid == new[pid]) == 1
        [ticket] = rows(Ticket, Ticket.reason == TicketReason.QUOTA_EXCEEDED)
        wait_until(lambda: rows(Ticket, Ticket.id == ticket.id)[0].status == TicketStatus.RESOLVED, timeout=30)
        assert wiring.breaker().states() == [] and not client.exists(keys.breaker_waiting())
        log = worker.log.read_text()
        assert "breaker_probe_scheduled" in log and "breaker_probe_ran" in log
        observe(fault="the quota runs out with only a worker running (no beat, no new report)",
                how=f"4 moved practices reported while Halo answers quota_exceeded; probe interval "
                    f"{PROBE_SECONDS} s; the quota comes back after {refused} refused calls",
                observed=f"the worker scheduled its own probes (every refused one doubled the wait); the 4 kept "
                         f"practices were switched {took:.1f} s after the quota came back (the pending probe's "
                         "countdown, then one run each); the quota ticket resolved",
                figures={"lost": 0, "unreconciled": 0, "switched_twice": 0, "tickets_twice": 0,
                         "calls": f"{refused} refused Find sites, then {sim.call_count('find_sites') - refused}",
                         "blocked": "n/a"})
    finally:
        client.close()
        stop_workers([worker])


def test_a_lost_probe_message_is_noticed_by_the_worker_and_scheduled_again(probing_stack, tmp_path, observe,
                                                                           redis_url):
    sim, env = probing_stack
    ids, old = onboard_fleet(sim, PmsType.D4W, [f"D{n}" for n in range(3)])
    new = {pid: sim.change_guid(PmsType.D4W, f"D{n}") for n, pid in enumerate(ids)}
    breaker = wiring.breaker()
    # The breaker opened and kept three practices' work, and the probe message it scheduled was lost
    # (its worker killed, the broker restarted without it): no schedule mark, no message anywhere.
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=time.time())
    for pid in ids:
        breaker.keep(pid)
    client = redis.Redis.from_url(redis_url)
    assert not client.exists(keys.breaker_probe_scheduled())
    sim.reset_counters()
    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    try:
        wait_until(lambda: current(ids) == new, timeout=60, interval=0.1,
                   what="the kept work run after the worker noticed no probe was on its way", log=worker.log)
        assert breaker.states() == [] and sim.call_count("find_sites") == len(ids)
        observe(fault="a lost probe message",
                how="a quota breaker open with 3 kept practices and no probe scheduled; one worker started",
                observed="the worker's probe watch noticed no probe on its way and scheduled one; the probe "
                         "closed the breaker and each kept practice ran once",
                figures={"lost": 0, "unreconciled": 0, "switched_twice": 0, "tickets_twice": 0,
                         "calls": f"{sim.call_count('find_sites')} Find sites", "blocked": "n/a"})
    finally:
        client.close()
        stop_workers([worker])


def test_after_a_mistyped_key_is_fixed_the_kept_work_runs_and_the_ticket_resolves(stack, tmp_path, observe,
                                                                                  redis_url):
    # issue 24 (High): the kept work stayed kept for ever and check_integration/unauthorized stayed open,
    # because the right key's answer closed only the right key's breaker.
    sim, env = stack
    ids, old = onboard_fleet(sim, PmsType.BEST_PRACTICE, [f"BP{n}" for n in range(3)])
    new = {pid: sim.change_guid(PmsType.BEST_PRACTICE, f"BP{n}") for n, pid in enumerate(ids)}
    typo = {**env, "HALO_SUBSCRIPTION_KEY": "operator-typo-key-0000"}
    [wrong] = start_workers(typo, tmp_path, count=1, name="typo", ready=True)
    try:
        for pid in ids:
            assert report_forbidden(old[pid], "Forbidden")
        wait_until(lambda: count(Ticket, Ticket.reason == TicketReason.UNAUTHORIZED) == 1, timeout=60,
                   what="the mistyped key refused", log=wrong.log)
        client = redis.Redis.from_url(redis_url)
        wait_until(lambda: client.scard(keys.breaker_waiting()) == len(ids), timeout=60,
                   what="the three practices' work kept", log=wrong.log)
        client.close()
    finally:
        stop_workers([wrong])
    [right] = start_workers(env, tmp_path, count=1, name="right", ready=True)
    try:
        ran = subprocess.run([sys.executable, "-m", "worker.cli", "reconcile", str(ids[0]), "--now", "--json"],
                             cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        wait_until(lambda: current(ids) == new, timeout=60, interval=0.2,
                   what="every kept practice switched once the key was fixed", log=right.log)
        [ticket] = rows(Ticket, Ticket.reason == TicketReason.UNAUTHORIZED)
        assert ticket.status == TicketStatus.RESOLVED
        observe(fault="a mistyped key, then fixed",
                how="a worker with a wrong HALO_SUBSCRIPTION_KEY and 3 reports; then a worker with the right key "
                    "and the runbook's `reconcile ID --now`",
                observed="the right key's answer closed the wrong key's breaker, ran the 2 other kept practices "
                         "(each switched once) and resolved check_integration/unauthorized",
                figures={"lost": 0, "unreconciled": 0, "switched_twice": 0, "tickets_twice": 0,
                         "calls": f"{sim.call_count('find_sites')} Find sites in all", "blocked": "n/a"})
    finally:
        stop_workers([right])


def test_an_operator_takes_over_the_claim_a_killed_worker_host_left(stack, tmp_path, observe, redis_url):
    # issue 24 (Medium): a whole worker host killed mid-run left the practice's claim for about 30 minutes;
    # `reconcile --now` waited 33 s and exited 1. The documented override: `reconcile ID --now --take-over`.
    sim, env = stack
    ids, old = onboard_fleet(sim, PmsType.D4W, ["D1"])
    pid = ids[0]
    new = sim.change_guid(PmsType.D4W, "D1")
    sim.set_latency(30)  # the run is in flight when its host dies
    client = redis.Redis.from_url(redis_url)
    [doomed] = start_workers(env, tmp_path, count=1, name="doomed", ready=True)
    try:
        assert report_forbidden(old[pid], "Forbidden")
        wait_until(lambda: client.exists(keys.processing(pid)), timeout=60, interval=0.05, what="the run in flight",
                   log=doomed.log)
        os.killpg(doomed.pid, signal.SIGKILL)  # the host is gone: main process and pool together
        doomed.wait(timeout=30)
    finally:
        stop_workers([doomed])
    assert client.ttl(keys.processing(pid)) > 0  # left behind by the dead run (its minute not up yet)
    sim.set_latency(0)
    ran = subprocess.run([sys.executable, "-m", "worker.cli", "reconcile", str(pid), "--now", "--take-over",
                          "--by", "alice", "--note", "worker host lost", "--json"],
                         cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert current([pid]) == {pid: new}
    audit = subprocess.run([sys.executable, "-m", "worker.cli", "audit", "--practice", str(pid), "--json"],
                           cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    entries = json.loads(audit.stdout)
    [taken] = [e for e in entries if e["action"] == "taken_over"]
    assert taken["actor"] == "alice" and taken["note"] == "worker host lost" and "took over" in taken["detail"]
    assert not client.exists(keys.processing(pid))
    client.close()
    observe(fault="a whole worker host killed mid-run, then an operator's take-over",
            how="a run in flight (Halo latency 30 s); the worker's process group SIGKILLed; "
                "`reconcile ID --now --take-over --by alice`",
            observed="the dead run's claim (left for the rest of its minute) was ended at once, the practice "
                     "switched, and `audit` shows `taken_over` by alice with her note",
            figures={"lost": 0, "unreconciled": 0, "switched_twice": 0, "tickets_twice": 0,
                     "calls": f"{sim.call_count('find_sites')} Find sites", "blocked": "n/a"})


def test_a_message_lost_after_the_broker_took_it_does_not_strand_the_practice(probing_stack, tmp_path, observe,
                                                                              redis_url):
    # issue 24 (Medium): a purge left halo:dirty:1 for about an hour; four later reports did not switch it.
    sim, env = probing_stack  # a short probe interval: the worker's watch looks every second
    ids, old = onboard_fleet(sim, PmsType.ZEDMED, ["ZM1"])
    pid = ids[0]
    new = sim.change_guid(PmsType.ZEDMED, "ZM1")
    client = redis.Redis.from_url(redis_url)
    try:
        assert report_forbidden(old[pid], "Forbidden")  # no worker yet: the message waits in the broker
        assert client.get(keys.dirty(pid)).split(b"|")[2] == b"q" and client.llen("reconcile") == 1
        client.delete("reconcile")  # `celery purge`: the message is gone, its queued mark is not
        [worker] = start_workers(env, tmp_path, count=1, ready=True)
        try:
            for _ in range(4):
                assert report_forbidden(old[pid], "Forbidden")  # they fold into the lost message
            wait_until(lambda: current([pid]) == {pid: new}, timeout=60, interval=0.2,
                       what="the practice switched although its message was lost", log=worker.log)
            assert "queued_mark_lost" in worker.log.read_text()
        finally:
            stop_workers([worker])
        observe(fault="a message lost after the broker took it (a purge)",
                how="a report queued with no worker running, the queue purged, a worker started, four more reports",
                observed="the worker's watch saw a confirmed queued mark while the broker held no run message, "
                         "twice in a row, dropped it and queued the practice again; it switched",
                figures={"lost": 0, "unreconciled": 0, "switched_twice": 0, "tickets_twice": 0,
                         "calls": f"{sim.call_count('find_sites')} Find sites (onboarding included)", "blocked": "n/a"})
    finally:
        client.close()

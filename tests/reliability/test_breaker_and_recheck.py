"""Never deaf, never silent: the re-check after a verification, the integrator-wide breaker, the GUID
index repaired by every answer, and integrator-wide tickets that do not churn.

Real parts throughout: Valkey, PostgreSQL, the simulator over HTTP, and real worker processes where
the promise is about a worker. Where the promise is about an hour, the use case runs in this process
with a clock the test moves (the breaker and the ticket rules take ``now`` from it), so an hour of
quota exhaustion takes seconds and no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis

from models import Action, GuidHistory, PmsType, Practice, Reconciliation, Ticket, TicketReason, TicketStatus, Trigger, Verdict
from models.outbox import OutboxEvent, OutboxTarget
from reconciler.adapters.coordination import keys
from reconciler.core.breaker import fingerprint, probe_delay
from reconciler.core.errors import CoordinationUnavailable
from reconciler.core.vocabulary import ForbiddenCause
from reconciler.usecases import reports
from reconciler.usecases.reconcile import reconcile
from reconciler.usecases.sweep import enqueue_planned
from tests.reliability.conftest import count, onboard_fleet, rows
from tests.utils.waiting import wait_until
from tests.utils.workers import ROOT, start_workers, stop_workers
from worker import admin, wiring
from worker.hooks import report_forbidden
from worker.simulator.faults import Fault

pytestmark = pytest.mark.integration

WRONG_KEY = "operator-typo-key-0000"


class Clock:
    """The use case's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def figures(*, lost=0, unreconciled=0, calls, blocked) -> dict:
    """The columns of docs/RELIABILITY.md's section for these tests; the doubles are counted from the rows."""
    histories = [(h.practice_id, h.guid) for h in rows(GuidHistory)]
    switched_twice = len(histories) - len(set(histories))  # a GUID entered twice by one practice
    tickets = [(t.kind, t.reason, t.practice_id) for t in rows(Ticket)]
    tickets_twice = len(tickets) - len(set(tickets))  # one condition ticketed more than once
    return {"lost": lost, "unreconciled": unreconciled, "switched_twice": switched_twice,
            "tickets_twice": tickets_twice, "calls": calls, "blocked": blocked}


def timed_report(guid: str, blocked: list[float]) -> bool:
    """``report_forbidden`` as the application calls it, its duration kept for the table (no bound asserted)."""
    started = time.monotonic()
    taken = report_forbidden(guid, "Forbidden")
    blocked.append(time.monotonic() - started)
    return taken


def practice_row(practice_id: int) -> Practice:
    [row] = rows(Practice, Practice.id == practice_id)
    return row


# --- no deaf window ---------------------------------------------------------------------------------


def test_a_guid_change_right_after_a_verification_is_switched_within_a_minute_of_the_next_report(
        stack, tmp_path, observe, redis_url):
    sim, env = stack
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Harbour Clinic")
    practice = admin.onboard("BestPractice", "BP1")
    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    client = redis.Redis.from_url(redis_url)
    blocked: list[float] = []
    try:
        assert timed_report(practice.halo_guid, blocked)
        wait_until(lambda: count(Reconciliation, Reconciliation.verdict == Verdict.UNCHANGED) == 1, timeout=60,
                   what="the first report verified unchanged")
        new = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")  # Halo migrates the site just after
        reported = time.monotonic()
        assert timed_report(practice.halo_guid, blocked)
        wait_until(lambda: practice_row(practice.id).halo_guid == new, timeout=60,
                   what="the GUID switched after the next report", log=worker.log)
        took = time.monotonic() - reported
        outcomes = {k.decode(): int(v) for k, v in client.hgetall(keys.report_outcomes()).items()}
        switches = count(GuidHistory, GuidHistory.practice_id == practice.id, GuidHistory.reason == "infrastructure_change")
        assert outcomes.get("recheck") == 1 and switches == 1
        assert count(Ticket, Ticket.reason == TicketReason.FORBIDDEN_PERSISTS) == 0
        observe(fault="a GUID change right after a verification",
                how="real worker: a report (verified unchanged), Halo migrates the site, a second report",
                observed=f"switched {took:.1f} s after the second report (its re-check queued for the end of the "
                         "10 s delay); no forbidden_persists",
                figures=figures(calls=f"{sim.call_count('find_sites')} Find sites, {sim.call_count('get_site')} "
                                      "Get site status", blocked=f"{max(blocked) * 1000:.1f} ms"))
    finally:
        client.close()
        stop_workers([worker])


# --- the breaker -------------------------------------------------------------------------------------


def test_an_hour_of_quota_exhaustion_over_100_practices_spends_one_probe_per_interval(stack, observe, redis_url):
    sim, env = stack
    ids, _ = onboard_fleet(sim, PmsType.ZEDMED, [f"ZM{n:03d}" for n in range(100)])
    clock = Clock()
    kept_runs: list[int] = []
    deps = replace(wiring.reconcile_deps(), clock=clock, requeue=kept_runs.append)
    sim.reset_counters()
    sim.inject(Fault("quota_exceeded"))
    started = clock.now
    calls_at: list[float] = []  # simulated seconds at which a Find sites call was spent
    sweeps_published = 0

    def run(pid: int, trigger: Trigger) -> None:
        before = sim.call_count("find_sites")
        reconcile(pid, trigger=trigger, deps=deps)
        calls_at.extend([(clock.now - started).total_seconds()] * (sim.call_count("find_sites") - before))

    # Every 30 simulated seconds ten practices' 403s arrive; every five minutes a sweep plans all 100.
    step, hour = 30, 3600
    for t in range(0, hour, step):
        clock.now = started + timedelta(seconds=t)
        for k in range(10):
            run(ids[(t // step * 10 + k) % len(ids)], Trigger.FORBIDDEN)
        if t % 300 == 0:
            published: list[int] = []
            enqueue_planned(iter([(pid, Trigger.SWEEP) for pid in ids]), queue=wiring.work_queue(),
                            publish=lambda pid, trigger: published.append(pid), breaker=deps.breaker,
                            now=clock.now.timestamp())
            sweeps_published += len(published)
            for pid in published:  # the probe a sweep may send runs like any task
                wiring.work_queue().forget(pid)
                run(pid, Trigger.SWEEP)
    during = list(calls_at)
    # At most one probe per probe interval: every gap at least the interval the breaker was waiting.
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert all(gap >= probe_delay(i + 1, base=60, cap=3600) for i, gap in enumerate(gaps)), (during, gaps)
    assert len(during) <= 7 and sweeps_published <= len(during)

    # The quota comes back: the next due probe succeeds and every kept practice runs once.
    sim.clear_faults()
    t = hour
    while not kept_runs:
        clock.now = started + timedelta(seconds=t)
        run(ids[0], Trigger.FORBIDDEN)
        t += step
        assert t < 3 * hour, "the breaker never probed after the quota came back"
    closed_at = (clock.now - started).total_seconds()
    probe_calls = len(calls_at) - len(during)
    sim_before = sim.call_count("find_sites")
    for pid in kept_runs:
        wiring.work_queue().forget(pid)  # what the published task's run does with the queued mark
        run(pid, Trigger.RETRY)
    kept_calls = sim.call_count("find_sites") - sim_before
    assert sorted(kept_runs + [ids[0]]) == sorted(ids)  # nothing lost: every practice kept ran once
    assert kept_calls == len(kept_runs)  # one call per practice
    [ticket] = rows(Ticket, Ticket.reason == TicketReason.QUOTA_EXCEEDED)
    assert ticket.status == TicketStatus.RESOLVED and ticket.practice_id is None
    assert deps.breaker.states() == []
    schedule = ", ".join(f"{s:.0f}" for s in during)
    print(f"\nquota hour: calls at simulated s {schedule} (probe intervals 60, 120, 240, 480, 960, 1920, 3600); "
          f"{len(during)} calls against {hour // step * 10 + 12 * 100} runs asked for; closed at {closed_at:.0f} s")
    observe(fault="an hour of quota exhaustion over 100 practices",
            how="use case with a moved clock: 10 reports every 30 s and a sweep of all 100 every 5 min for 3600 s, "
                "then the quota back",
            observed=f"calls during the hour at s {schedule}: one per probe interval (60, 120, 240, 480, 960, 1920 s), "
                     f"against {hour // step * 10 + 12 * 100} runs asked for; the breaker closed at {closed_at:.0f} s "
                     f"after {probe_calls} probe; then {kept_calls} calls for the {len(kept_runs)} kept practices, one "
                     "each; one quota ticket, resolved at close",
            figures=figures(calls=f"{len(during)} in the hour + {probe_calls} probe + {kept_calls} kept",
                            unreconciled=len(set(ids) - set(kept_runs) - {ids[0]}),
                            blocked="n/a (no application call)"))


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def _breaker_check(result: subprocess.CompletedProcess) -> dict:
    [check] = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "breaker"]
    return check


def test_an_operators_mistyped_key_does_not_stop_workers_holding_the_right_key(stack, tmp_path, observe):
    sim, env = stack
    ids, guids = onboard_fleet(sim, PmsType.BEST_PRACTICE, ["BP1", "BP2"])
    typo = {**env, "HALO_SUBSCRIPTION_KEY": WRONG_KEY}

    ran = _cli(["reconcile", str(ids[0]), "--now", "--json"], typo)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["verdict"] == "unauthorized"
    # The operator's shell sees its key's breaker; the fleet's key sees none. Neither shows a key.
    theirs, ours = _cli(["health", "--json"], typo), _cli(["health", "--json"], env)
    assert theirs.returncode == 1 and not _breaker_check(theirs)["ok"]
    assert fingerprint(WRONG_KEY) in _breaker_check(theirs)["detail"]
    assert _breaker_check(ours)["ok"], _breaker_check(ours)
    assert WRONG_KEY not in theirs.stdout + theirs.stderr + ran.stdout + ran.stderr

    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    try:
        new = sim.change_guid(PmsType.BEST_PRACTICE, "BP2")
        blocked: list[float] = []
        assert timed_report(guids[ids[1]], blocked)
        wait_until(lambda: practice_row(ids[1]).halo_guid == new, timeout=60,
                   what="the worker with the right key switching BP2", log=worker.log)
        refused = [status for _, _, _, status in sim.logged() if status == 401]
        assert refused == [401, 401]  # the operator's run and the operator's `health`: nobody else's

        observe(fault="an operator's mistyped key",
                how="`reconcile --now` with a wrong HALO_SUBSCRIPTION_KEY, then a moved practice reported to a "
                    "worker holding the right key",
                observed=f"the wrong key's breaker (key:{fingerprint(WRONG_KEY)}) opened; `health` exits 1 with it "
                         "in the operator's shell and passes it in the fleet's; the worker switched the moved practice",
                figures=figures(calls="2 refused (the operator's run and health), then the worker's "
                                      f"{sim.call_count('find_sites')} Find sites in all", blocked=f"{max(blocked) * 1000:.1f} ms"))
    finally:
        stop_workers([worker])


def test_a_broker_message_claiming_to_be_manual_is_gated(stack, tmp_path, observe, redis_url):
    sim, env = stack
    ids, _ = onboard_fleet(sim, PmsType.BEST_PRACTICE, ["BP1"])
    breaker = wiring.breaker()
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=time.time())  # open, next probe a minute away
    client = redis.Redis.from_url(redis_url)
    sim.reset_counters()
    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    try:
        admin._send("halo.reconcile_practice", [ids[0], "manual"], "reconcile")
        wait_until(lambda: client.sismember(keys.breaker_waiting(), ids[0]), timeout=60,
                   what="the message's practice kept by the breaker", log=worker.log)
        assert sim.call_count("find_sites") == 0 and count(Reconciliation) == 0
        observe(fault="a broker message claiming to be manual",
                how="`halo.reconcile_practice [id, \"manual\"]` published while the breaker is open",
                observed="gated like any queued work: kept for the breaker, no reconciliation",
                figures=figures(calls=0, blocked="n/a (no application call)"))
    finally:
        client.close()
        stop_workers([worker])


# --- the GUID index and integrator-wide tickets --------------------------------------------------------


class BlipAtSwitch:
    """The real run's coordination, except that Redis drops the note made right after the switch."""

    def __init__(self, real) -> None:
        self.real, self.blipped = real, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def finish(self, practice_id: int, claim, **kwargs):
        if kwargs.get("noted") and kwargs.get("replaced_guid") and not self.blipped:
            self.blipped += 1
            raise CoordinationUnavailable("the coordination store did not answer (ConnectionError)")
        return self.real.finish(practice_id, claim, **kwargs)


def test_a_redis_blip_at_switch_time_is_repaired_by_the_next_answer(stack, observe, redis_url):
    sim, env = stack
    ids, guids = onboard_fleet(sim, PmsType.BEST_PRACTICE, ["BP1"])
    pid, old = ids[0], guids[ids[0]]
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    deps = wiring.reconcile_deps()
    blip = BlipAtSwitch(deps.runs)
    client = redis.Redis.from_url(redis_url)
    try:
        switched = reconcile(pid, trigger=Trigger.FORBIDDEN, deps=replace(deps, runs=blip))
        assert switched.action == Action.SWITCHED and blip.blipped == 1
        assert client.hget(keys.guid_index(), old) == f"{pid}:current".encode()  # the blip left it "current"

        assert reconcile(pid, trigger=Trigger.SWEEP, deps=deps).verdict == Verdict.UNCHANGED  # the next answer
        assert client.hget(keys.guid_index(), old) == f"{pid}:stale".encode()
        assert client.hget(keys.guid_index(), new) == f"{pid}:current".encode()
        calls = sim.call_count("find_sites")
        outcomes = [wiring.reporter().report(old, "Forbidden") for _ in range(3)]
        assert outcomes == ["stale"] * 3 and sim.call_count("find_sites") == calls
        assert count(Ticket, Ticket.reason == TicketReason.FORBIDDEN_PERSISTS) == 0
        observe(fault="a Redis blip at switch time",
                how="the index update after a switch fails; a sweep's answer follows; three reports of the old GUID",
                observed="index repaired by the next answer (old GUID stale); the three reports cost 0 Halo calls; "
                         "no false forbidden_persists",
                figures=figures(calls=f"{calls} Find sites (onboarding, the switch, the next answer), 0 for the reports",
                                blocked="n/a (reports through the Reporter)"))
    finally:
        client.close()


def test_integrator_wide_tickets_the_application_reports_do_not_churn(stack, observe, redis_url):
    sim, env = stack
    ids, guids = onboard_fleet(sim, PmsType.BEST_PRACTICE, ["BP1"])
    clock = Clock()
    deps = replace(wiring.reconcile_deps(), clock=clock)
    notes: list[list] = []
    reporter = replace(wiring.reporter(), publish=lambda name, args, queue, **options: notes.append(args))
    client = redis.Redis.from_url(redis_url)
    message = "Out of call volume quota. Quota will be replenished in 00:05:00."
    try:
        for _ in range(3):  # three reports six minutes apart, a successful worker call after each
            assert reporter.report(guids[ids[0]], message) == "integrator_wide"
            cause, text = notes.pop()
            reports.note_integrator_forbidden(ForbiddenCause(cause), text, unit_of_work=wiring.unit_of_work,
                                              now=clock())
            clock.advance(minutes=1)
            assert reconcile(ids[0], trigger=Trigger.SWEEP, deps=deps).verdict == Verdict.UNCHANGED
            clock.advance(minutes=5)
            client.delete(keys.integrator_forbidden(cause))  # what the five-minute fold's expiry does
        [ticket] = rows(Ticket, Ticket.reason == TicketReason.QUOTA_EXCEEDED)
        assert (ticket.status, ticket.occurrences) == (TicketStatus.OPEN, 3)
        # One row per configured target: the webhook's rows are the events as they happened.
        events = [e.event_type for e in rows(OutboxEvent, OutboxEvent.ticket_id == ticket.id,
                                              OutboxEvent.target == OutboxTarget.WEBHOOK)]
        assert events.count("ticket.opened") == 1 and "ticket.resolved" not in events

        clock.advance(hours=1)  # a whole persistence window without a report: the next answer resolves it
        reconcile(ids[0], trigger=Trigger.SWEEP, deps=deps)
        assert [t.status for t in rows(Ticket, Ticket.reason == TicketReason.QUOTA_EXCEEDED)] == [TicketStatus.RESOLVED]
        observe(fault="integrator-wide tickets reported by the application",
                how="three quota 403s reported six minutes apart, a successful worker call after each",
                observed="one ticket (3 occurrences), opened once, not resolved while reported; resolved by the "
                         "first answer after an hour without reports",
                figures=figures(calls=f"{sim.call_count('find_sites')} Find sites (onboarding and the four answers)",
                                blocked="n/a (reports through the Reporter)"))
    finally:
        client.close()


def test_persisting_403s_still_open_forbidden_persists_across_rechecks(stack, redis_url):
    sim, env = stack
    ids, guids = onboard_fleet(sim, PmsType.BEST_PRACTICE, ["BP1"])
    deps = wiring.reconcile_deps()
    sent: list[tuple] = []
    reporter = replace(wiring.reporter(), publish=lambda name, args, queue, **options: sent.append((name, args)))
    assert reconcile(ids[0], trigger=Trigger.FORBIDDEN, deps=deps).verdict == Verdict.UNCHANGED
    assert [reporter.report(guids[ids[0]], "Forbidden") for _ in range(2)] == ["recheck", "counted"]
    recheck = reconcile(ids[0], trigger=Trigger.FORBIDDEN, deps=deps)  # the queued re-check: two 403s so far
    assert (recheck.verdict, recheck.action) == (Verdict.UNCHANGED, Action.MARKED_VERIFIED)
    assert reporter.report(guids[ids[0]], "Forbidden") == "recheck"  # the third, after that confirmation
    third = reconcile(ids[0], trigger=Trigger.FORBIDDEN, deps=deps)
    # 3 reports within the window with the practice verified unchanged in between: the ticket.
    assert (third.verdict, third.action) == (Verdict.UNCHANGED, Action.TICKETED)
    [ticket] = rows(Ticket, Ticket.reason == TicketReason.FORBIDDEN_PERSISTS)
    assert ticket.practice_id == ids[0]

from datetime import timedelta

from models import Action, PracticeState, Trigger, Verdict
from worker.simulator import Fault


def test_5xx_after_retries_backs_off_without_changing_anything(world):
    pid = world.onboard(pms_id="BP1")
    guid = world.practice(pid).halo_guid
    world.sim.inject(Fault("server_error", status=503))
    before = world.finds("BP1")

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.HALO_UNAVAILABLE, Action.BACKED_OFF)
    assert world.finds("BP1") - before == 4  # bounded: at most 4 attempts per call
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.backoff_attempts) == (guid, PracticeState.BACKOFF, 1)
    wait = practice.next_attempt_at - world.clock.now
    assert timedelta(seconds=30) <= wait <= timedelta(seconds=60)
    assert world.tickets() == []


def test_backoff_defers_automatic_runs_and_doubles_then_success_resets(world):
    pid = world.onboard(pms_id="BP1")
    world.sim.inject(Fault("server_error", status=500))
    world.reconcile(pid)

    assert world.reconcile(pid, trigger=Trigger.RETRY).skipped == "backoff"
    world.clock.advance(minutes=2)
    world.reconcile(pid, trigger=Trigger.RETRY)
    practice = world.practice(pid)
    assert practice.backoff_attempts == 2
    assert timedelta(seconds=60) <= practice.next_attempt_at - world.clock.now <= timedelta(seconds=120)

    world.sim.clear_faults()
    world.clock.advance(minutes=3)
    assert world.reconcile(pid, trigger=Trigger.RETRY).verdict == Verdict.UNCHANGED
    practice = world.practice(pid)
    assert (practice.state, practice.backoff_attempts, practice.next_attempt_at) == (PracticeState.ACTIVE, 0, None)


def test_garbage_from_halo_never_switches(world):
    pid = world.onboard(pms_id="BP1")
    guid = world.practice(pid).halo_guid
    world.sim.inject(Fault("garbage_json"))
    assert world.reconcile(pid).verdict == Verdict.HALO_UNAVAILABLE
    assert world.practice(pid).halo_guid == guid


def test_a_day_of_halo_unavailable_opens_one_unavailable_persists_ticket_resolved_by_the_next_answer(world):
    from models import TicketKind, TicketReason, TicketStatus

    pid = world.onboard(pms_id="BP1")
    world.sim.inject(Fault("server_error", status=503))
    first = world.clock.now
    for _ in range(80):  # retried as the backoff allows (at most an hour apart), for a little over a day
        world.reconcile(pid, trigger=Trigger.RETRY)
        world.clock.now = world.practice(pid).next_attempt_at or world.clock.now
        if world.clock.now - first > timedelta(days=1, hours=1):
            break
    assert world.practice(pid).unavailable_since == first  # the first of the consecutive verdicts
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.practice_id, ticket.status) == (
        TicketKind.CONTACT_HALO_SUPPORT, TicketReason.UNAVAILABLE_PERSISTS, pid, TicketStatus.OPEN)
    assert ticket.occurrences >= 1 and ticket.opened_at - first >= timedelta(days=1)

    world.sim.clear_faults()
    assert world.reconcile(pid, trigger=Trigger.RETRY).verdict == Verdict.UNCHANGED
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED]
    assert world.practice(pid).unavailable_since is None


def test_halo_unavailable_for_less_than_the_threshold_opens_no_ticket(world):
    pid = world.onboard(pms_id="BP1")
    world.sim.inject(Fault("server_error", status=503))
    for _ in range(8):  # 1 min doubling: about four hours
        world.reconcile(pid, trigger=Trigger.RETRY)
        world.clock.now = world.practice(pid).next_attempt_at or world.clock.now
    assert world.practice(pid).unavailable_since is not None
    assert world.tickets() == []

from models import Action, TicketKind, TicketReason, TicketStatus, Trigger, Verdict
from worker.simulator import Fault


def test_ip_not_allowed_opens_one_integrator_wide_ticket_and_the_breaker(world):
    first, second = world.onboard(pms_id="BP1"), world.onboard(pms_id="BP2")
    guids = {world.practice(first).halo_guid, world.practice(second).halo_guid}
    world.sim.inject(Fault("ip_not_allowed"))

    refused = world.reconcile(first)
    assert (refused.verdict, refused.action) == (Verdict.IP_NOT_ALLOWED, Action.TICKETED)
    calls = world.finds()
    kept = world.reconcile(second)  # the breaker is open: no call, the work is kept
    assert (kept.verdict, kept.skipped, world.finds()) == (None, "breaker_open", calls)
    assert {world.practice(p).halo_guid for p in (first, second)} == guids
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.practice_id, ticket.occurrences) == (
        TicketKind.CONTACT_HALO_SUPPORT, TicketReason.IP_NOT_ALLOWED, None, 1)
    assert [(s.scope, s.cause) for s in world.breaker.states()] == [("integrator", Verdict.IP_NOT_ALLOWED)]

    world.sim.clear_faults()
    world.clock.advance(seconds=60)
    probe = world.reconcile(first, trigger=Trigger.SWEEP)  # the one probe, due after 60 s
    assert probe.verdict == Verdict.UNCHANGED
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED]
    assert world.breaker.states() == []
    assert probe.released == (second,) and world.requeued == [second]  # the kept work runs once


def test_a_worker_seen_refusal_alternating_with_successes_keeps_one_ticket(world):
    # issue 24 (Medium): the same refusal, alternating with successes four times, gave 4 tickets, each
    # opened and resolved (refusals reported by the application give one).
    pid = world.onboard(pms_id="BP1")
    for _ in range(4):
        world.sim.inject(Fault("ip_not_allowed"))
        assert world.reconcile(pid, trigger=Trigger.SWEEP).verdict == Verdict.IP_NOT_ALLOWED
        world.sim.clear_faults()
        world.clock.advance(seconds=60)
        assert world.reconcile(pid, trigger=Trigger.SWEEP).verdict == Verdict.UNCHANGED  # the probe closes it
        world.clock.advance(minutes=5)
    [ticket] = world.tickets()
    assert (ticket.reason, ticket.status, ticket.occurrences) == (TicketReason.IP_NOT_ALLOWED, TicketStatus.RESOLVED, 4)
    # The webhook still hears each time it opened and resolved, each event once.
    from sqlmodel import select

    from models.outbox import OutboxEvent, OutboxTarget
    from worker import db

    with db.new_session() as session:
        events = [e.event_type for e in session.exec(select(OutboxEvent).where(
            OutboxEvent.ticket_id == ticket.id, OutboxEvent.target == OutboxTarget.WEBHOOK)).all()]
    assert events.count("ticket.opened") == 4 and events.count("ticket.resolved") == 4
    # An hour after it cleared, the condition coming back is a new incident: a new ticket.
    world.clock.advance(hours=2)
    world.sim.inject(Fault("ip_not_allowed"))
    assert world.reconcile(pid, trigger=Trigger.SWEEP).verdict == Verdict.IP_NOT_ALLOWED
    assert len(world.tickets()) == 2

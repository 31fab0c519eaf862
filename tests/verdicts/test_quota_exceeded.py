from models import TicketKind, TicketReason, Trigger, Verdict
from worker.simulator import Fault


def test_quota_exceeded_opens_one_integrator_wide_ticket(world):
    first, second = world.onboard(pms_id="BP1"), world.onboard(pms_id="BP2")
    world.sim.inject(Fault("quota_exceeded"))

    assert world.reconcile(first).verdict == Verdict.QUOTA_EXCEEDED
    world.clock.advance(seconds=60)
    assert world.reconcile(second, trigger=Trigger.SWEEP).verdict == Verdict.QUOTA_EXCEEDED  # the probe

    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.practice_id, ticket.occurrences) == (
        TicketKind.CONTACT_HALO_SUPPORT, TicketReason.QUOTA_EXCEEDED, None, 2)
    [state] = world.breaker.states()
    assert (state.cause, state.failures, state.next_probe_at - world.clock().timestamp()) == (
        Verdict.QUOTA_EXCEEDED, 2, 120)  # the failed probe doubled the wait

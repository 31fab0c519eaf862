from models import TicketKind, TicketReason, Verdict
from worker.simulator import Fault


def test_quota_exceeded_opens_one_integrator_wide_ticket(world):
    first, second = world.onboard(pms_id="BP1"), world.onboard(pms_id="BP2")
    world.sim.inject(Fault("quota_exceeded"))

    assert world.reconcile(first).verdict == Verdict.QUOTA_EXCEEDED
    assert world.reconcile(second).verdict == Verdict.QUOTA_EXCEEDED

    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.practice_id) == (
        TicketKind.CONTACT_HALO_SUPPORT, TicketReason.QUOTA_EXCEEDED, None)

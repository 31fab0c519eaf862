from models import Action, TicketKind, TicketReason, TicketStatus, Verdict
from worker.simulator import Fault


def test_ip_not_allowed_opens_one_integrator_wide_ticket(world):
    first, second = world.onboard(pms_id="BP1"), world.onboard(pms_id="BP2")
    guids = {world.practice(first).halo_guid, world.practice(second).halo_guid}
    world.sim.inject(Fault("ip_not_allowed"))

    results = [world.reconcile(first), world.reconcile(second)]

    assert {r.verdict for r in results} == {Verdict.IP_NOT_ALLOWED}
    assert {r.action for r in results} == {Action.TICKETED}
    assert {world.practice(p).halo_guid for p in (first, second)} == guids
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.practice_id, ticket.occurrences) == (
        TicketKind.CONTACT_HALO_SUPPORT, TicketReason.IP_NOT_ALLOWED, None, 2)

    world.sim.clear_faults()
    world.reconcile(first)
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED]

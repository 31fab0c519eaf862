from models import Action, PmsType, TicketKind, TicketReason, Verdict


def test_two_authoritative_active_sites_are_ambiguous(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    guid = world.practice(pid).halo_guid
    world.sim.add_site(PmsType.BEST_PRACTICE, "BP1", authoritative=None, practice_name="Halo Clinic South")
    world.sim.set_authoritative(guid, None)

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.AMBIGUOUS, Action.TICKETED)
    assert world.practice(pid).halo_guid == guid
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason) == (TicketKind.CONTACT_HALO_SUPPORT, TicketReason.AMBIGUOUS)

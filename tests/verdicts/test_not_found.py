from models import Action, PmsType, TicketKind, TicketReason, TicketStatus, Verdict


def test_no_active_site_is_not_found_with_a_contact_practice_ticket(world):
    pid = world.onboard(pms_id="BP1")
    guid = world.practice(pid).halo_guid
    world.sim.remove_practice(PmsType.BEST_PRACTICE, "BP1")

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.NOT_FOUND, Action.TICKETED)
    assert world.practice(pid).halo_guid == guid
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason) == (TicketKind.CONTACT_PRACTICE, TicketReason.NOT_FOUND)


def test_removed_site_flagged_authoritative_is_never_chosen(world):
    from models import SiteStatus

    pid = world.onboard(pms_id="BP1")
    world.sim.set_status(world.practice(pid).halo_guid, SiteStatus.REMOVED)
    assert world.reconcile(pid).verdict == Verdict.NOT_FOUND


def test_not_found_ticket_resolves_when_the_practice_is_back(world):
    from models import SiteStatus

    pid = world.onboard(pms_id="BP1")
    guid = world.practice(pid).halo_guid
    world.sim.set_status(guid, SiteStatus.UNINSTALLED)
    world.reconcile(pid)
    world.sim.set_status(guid, SiteStatus.ACTIVE)

    assert world.reconcile(pid).verdict == Verdict.UNCHANGED
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED]

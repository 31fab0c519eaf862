from models import Action, PmsType, SiteStatus, TicketKind, TicketReason, Verdict


def _flip_back(world, old: str) -> None:
    world.sim.set_status(old, SiteStatus.ACTIVE)
    world.sim.set_authoritative(old, True)


def test_switching_back_within_the_window_is_flapping(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.reconcile(pid)
    world.clock.advance(days=3)
    _flip_back(world, old)

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.FLAPPING, Action.TICKETED)
    assert world.practice(pid).halo_guid == new
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason) == (TicketKind.CONTACT_HALO_SUPPORT, TicketReason.FLAPPING)


def test_switching_back_after_the_window_is_an_infrastructure_change(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.reconcile(pid)
    world.clock.advance(days=8)
    _flip_back(world, old)

    assert world.reconcile(pid).verdict == Verdict.INFRASTRUCTURE_CHANGE
    assert world.practice(pid).halo_guid == old

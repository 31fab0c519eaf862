"""A site flagged `authoritative: false` is never chosen."""

from models import Action, PmsType, SiteStatus, TicketReason, Verdict


def test_an_active_copy_flagged_not_authoritative_is_never_switched_to(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    world.sim.set_status(old, SiteStatus.UNINSTALLED)
    backup = world.sim.add_site(PmsType.BEST_PRACTICE, "BP1", practice_name="Halo Clinic South", authoritative=False)

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.NOT_FOUND, Action.TICKETED)
    assert world.practice(pid).halo_guid == old != backup
    assert [t.reason for t in world.tickets()] == [TicketReason.NOT_FOUND]


def test_a_non_authoritative_copy_beside_the_authoritative_site_changes_nothing(world):
    pid = world.onboard(pms_id="BP1")
    world.sim.add_site(PmsType.BEST_PRACTICE, "BP1", practice_name="Halo Clinic South", authoritative=False)
    assert world.reconcile(pid).verdict == Verdict.UNCHANGED


def test_an_unflagged_site_beside_another_active_one_is_not_chosen(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    world.sim.set_authoritative(old, False)
    world.sim.add_site(PmsType.BEST_PRACTICE, "BP1", practice_name="Halo Clinic South", authoritative=None)

    assert world.reconcile(pid).verdict == Verdict.AMBIGUOUS
    assert world.practice(pid).halo_guid == old

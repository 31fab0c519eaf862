"""`initialising`: the only site that could become the practice's is still being installed."""

from models import Action, PmsType, PracticeState, SiteStatus, Trigger, Verdict


def test_a_reinstall_that_is_still_initialising_is_waited_for_without_a_ticket(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.set_status(new, SiteStatus.INITIALISING)

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.INITIALISING, Action.BACKED_OFF)
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.proposed_guid) == (old, PracticeState.BACKOFF, None)
    assert practice.next_attempt_at is not None and practice.next_attempt_at > world.clock()
    assert world.tickets() == []

    world.sim.set_status(new, SiteStatus.ACTIVE)
    world.clock.advance(hours=1)
    done = world.reconcile(pid, trigger=Trigger.RETRY)
    assert (done.verdict, done.action) == (Verdict.INFRASTRUCTURE_CHANGE, Action.SWITCHED)
    assert world.practice(pid).state == PracticeState.ACTIVE and world.practice(pid).next_attempt_at is None


def test_the_issues_reinstall_beside_a_non_authoritative_backup_is_initialising_not_a_switch(world):
    # The old site was uninstalled, a backup copy is active with authoritative: false, and a new
    # install is initialising: the backup copy is never chosen.
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    world.sim.set_status(old, SiteStatus.UNINSTALLED)
    backup = world.sim.add_site(PmsType.BEST_PRACTICE, "BP1", practice_name="Halo Clinic South", authoritative=False)
    world.sim.add_site(PmsType.BEST_PRACTICE, "BP1", practice_name="Halo Clinic South",
                       status=SiteStatus.INITIALISING, authoritative=None)

    result = world.reconcile(pid)

    assert result.verdict == Verdict.INITIALISING
    assert world.practice(pid).halo_guid == old != backup
    assert world.tickets() == []

from models import Action, PmsType, PracticeState, TicketReason, Verdict


def test_new_guid_same_identifiers_switches_and_records_history(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.INFRASTRUCTURE_CHANGE, Action.SWITCHED)
    assert (result.old_guid, result.new_guid) == (old, new)
    assert world.practice(pid).halo_guid == new
    assert world.history(pid) == [(old, "onboarded"), (new, "infrastructure_change")]
    assert world.tickets() == []


def test_switch_and_ticket_policy_switches_and_tickets(world):
    pid = world.onboard(pms_id="BP1")
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")

    result = world.reconcile(pid, infrastructure="switch_and_ticket")

    assert world.practice(pid).halo_guid == new
    [ticket] = world.tickets()
    assert ticket.reason == TicketReason.INFRASTRUCTURE_CHANGE
    assert result.ticket_id == ticket.id


def test_hold_policy_keeps_the_old_guid_and_proposes_the_new(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")

    result = world.reconcile(pid, infrastructure="hold")

    assert result.action == Action.HELD
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.proposed_guid) == (old, PracticeState.HELD, new)


def test_a_second_run_after_the_switch_is_unchanged(world):
    pid = world.onboard(pms_id="BP1")
    world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.reconcile(pid)
    assert world.reconcile(pid).verdict == Verdict.UNCHANGED
    assert len(world.history(pid)) == 2

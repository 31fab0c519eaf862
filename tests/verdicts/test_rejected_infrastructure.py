"""Rejections hold for held infrastructure changes too: by the `hold` policy or the mass-change guard."""

from models import Action, PmsType, PracticeState, TicketReason, TicketStatus, Verdict
from reconciler.usecases import decisions
from worker import wiring


def test_a_rejected_change_held_by_policy_is_not_held_again_nor_switched_to_later(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    assert world.reconcile(pid, infrastructure="hold").action == Action.HELD
    world.reject(pid)

    again = world.reconcile(pid, infrastructure="hold")
    later = world.reconcile(pid)  # even once the policy switches

    assert (again.verdict, again.action) == (Verdict.INFRASTRUCTURE_CHANGE, Action.NONE)
    assert later.action == Action.NONE
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state) == (old, PracticeState.ACTIVE)
    assert [(t.reason, t.status) for t in world.tickets()] == [
        (TicketReason.INFRASTRUCTURE_CHANGE, TicketStatus.RESOLVED)]

    newer = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")  # Halo proposes something else
    assert world.reconcile(pid, infrastructure="hold").action == Action.HELD
    assert world.practice(pid).proposed_guid == newer != new


def test_a_rejected_change_held_by_the_guard_is_not_switched_to_after_resume(world):
    ids = [world.onboard(pms_id=f"BP{i}") for i in range(4)]
    olds = [world.practice(p).halo_guid for p in ids]
    news = [world.sim.change_guid(PmsType.BEST_PRACTICE, f"BP{i}") for i in range(4)]
    guard = {"mass_change_min": 2, "mass_change_fraction": 0.01}
    assert [world.reconcile(p, **guard).action for p in ids] == [Action.SWITCHED, Action.SWITCHED,
                                                                   Action.HELD, Action.HELD]
    world.reject(ids[2])
    with wiring.unit_of_work() as unit:
        decisions.set_autoswitch(unit, paused=False, now=world.clock(), actor="test-approver")
        unit.commit()
    world.clock.advance(hours=2)  # outside the guard's window

    rejected, other = world.reconcile(ids[2], **guard), world.reconcile(ids[3], **guard)

    assert rejected.action == Action.NONE and world.practice(ids[2]).halo_guid == olds[2]
    assert other.action == Action.SWITCHED and world.practice(ids[3]).halo_guid == news[3]
    assert not [t for t in world.tickets() if t.practice_id == ids[2] and t.status == TicketStatus.OPEN]

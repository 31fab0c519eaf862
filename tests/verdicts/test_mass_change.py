from models import Action, PmsType, PracticeState, TicketReason, Verdict
from models.guard import AUTOSWITCH_PAUSED
from worker import wiring


def test_more_switches_than_plausible_pause_autoswitching_and_hold(world):
    ids = [world.onboard(pms_id=f"BP{i}") for i in range(4)]
    for i in range(4):
        world.sim.change_guid(PmsType.BEST_PRACTICE, f"BP{i}")

    results = [world.reconcile(pid, mass_change_min=2, mass_change_fraction=0.01) for pid in ids]

    assert [r.action for r in results] == [Action.SWITCHED, Action.SWITCHED, Action.HELD, Action.HELD]
    assert {r.verdict for r in results} == {Verdict.INFRASTRUCTURE_CHANGE}
    assert [world.practice(p).state for p in ids[2:]] == [PracticeState.HELD, PracticeState.HELD]
    mass = [t for t in world.tickets() if t.reason == TicketReason.MASS_CHANGE]
    assert len(mass) == 1 and mass[0].practice_id is None
    with wiring.unit_of_work() as unit:
        assert unit.flag(AUTOSWITCH_PAUSED) is not None


def test_after_a_resume_only_switches_since_the_resume_count(world):
    # issue 24 (Medium): after `autoswitch resume`, the next run of a held practice paused the guard again
    # and opened mass_change #2, because the switches made before the resume were counted.
    from reconciler.usecases import decisions

    ids = [world.onboard(pms_id=f"BP{i}") for i in range(4)]
    for i in range(4):
        world.sim.change_guid(PmsType.BEST_PRACTICE, f"BP{i}")
    policy = {"mass_change_min": 2, "mass_change_fraction": 0.01}
    assert [world.reconcile(pid, **policy).action for pid in ids] == [Action.SWITCHED, Action.SWITCHED,
                                                                      Action.HELD, Action.HELD]
    world.clock.advance(minutes=5)
    with wiring.unit_of_work() as unit:
        decisions.set_autoswitch(unit, paused=False, now=world.clock(), actor="test-operator")
        unit.commit()
    world.clock.advance(minutes=1)
    assert world.reconcile(ids[2], **policy).action == Action.SWITCHED  # the held change goes through
    with wiring.unit_of_work() as unit:
        assert unit.flag(AUTOSWITCH_PAUSED) is None
    assert len([t for t in world.tickets() if t.reason == TicketReason.MASS_CHANGE]) == 1

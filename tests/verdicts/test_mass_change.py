from models import Action, PmsType, PracticeState, TicketReason, Verdict
from models.guard import AUTOSWITCH_PAUSED
from worker import db, wiring


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
        assert unit.is_flag_set(AUTOSWITCH_PAUSED)

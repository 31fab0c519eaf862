"""A reconciliation's audit row counts its own Halo calls, whoever started it."""

from models import Action, PmsType, Trigger


def test_each_run_counts_only_its_own_halo_calls(world):
    pid = world.onboard(pms_id="BP1")  # onboarding's calls are the same client's, and not a run's
    assert world.reconcile(pid).halo_calls == 1
    assert world.reconcile(pid, trigger=Trigger.MANUAL).halo_calls == 1  # an operator's run too
    world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    switched = world.reconcile(pid, trigger=Trigger.MANUAL)
    assert (switched.action, switched.halo_calls) == (Action.SWITCHED, 2)  # Find sites, Get site status

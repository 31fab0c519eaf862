"""Two reconciliations of one practice racing: the version column lets only one switch."""

import pytest

from models import Action, PmsType, Trigger, Verdict
from reconciler.usecases.reconcile import reconcile

# Both runs here are one thread's, the second inside the first's Halo call: over Valkey the work
# queue's claim makes the second wait, as it does across workers (``tests/integration`` holds that).
# The race the version column settles is the one two claims cannot prevent (a claim lost to its
# expiry, a person deciding), so these run without a work queue.
pytestmark = pytest.mark.parametrize("world", ["fake"], indirect=True)


def test_racing_reconciliations_switch_once(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    deps = world.deps()
    inner_results = []
    real_find = world.client.find_sites

    def find_then_lose_the_race(*args, **kwargs):
        sites = real_find(*args, **kwargs)
        if not inner_results:  # the other worker finishes while we wait for Halo
            inner_results.append(None)
            world.client.find_sites = real_find
            inner_results[0] = reconcile(pid, trigger=Trigger.FORBIDDEN, deps=deps)
        return sites

    world.client.find_sites = find_then_lose_the_race

    outer = reconcile(pid, trigger=Trigger.FORBIDDEN, deps=deps)

    assert inner_results[0].verdict == Verdict.INFRASTRUCTURE_CHANGE
    assert outer.verdict == Verdict.UNCHANGED  # re-read, re-decided: already switched
    assert world.practice(pid).halo_guid == new
    assert world.history(pid) == [(old, "onboarded"), (new, "infrastructure_change")]


def test_an_old_answer_never_overwrites_a_newer_switch(world):
    # Run 1 asks Halo and sees X. Meanwhile Halo moves on to Y (X removed) and run 2 switches to Y.
    # Run 1's answer is then older than the practice: it is not applied; run 1 asks again.
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    x = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    deps = world.deps()
    real_find = world.client.find_sites
    inner = []

    def answer_x_then_lose_the_race(*args, **kwargs):
        sites = real_find(*args, **kwargs)  # X, as Halo saw it then
        world.client.find_sites = real_find
        y = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
        inner.append((y, reconcile(pid, trigger=Trigger.FORBIDDEN, deps=deps)))
        return sites

    world.client.find_sites = answer_x_then_lose_the_race

    outer = reconcile(pid, trigger=Trigger.MANUAL, deps=deps)

    [(y, second)] = inner
    assert (second.action, second.new_guid) == (Action.SWITCHED, y)
    assert outer.verdict == Verdict.UNCHANGED and outer.action != Action.SWITCHED
    assert world.practice(pid).halo_guid == y
    assert world.history(pid) == [(old, "onboarded"), (y, "infrastructure_change")]
    assert x not in [guid for guid, _ in world.history(pid)]

"""Two reconciliations of one practice racing: the version column lets only one switch.

On SQLite and on PostgreSQL, where the losing write is one statement (``SqlStore.write_run``) that
must write nothing of its own: no GUID period, no change event, no audit row.
"""

import pytest
from sqlmodel import func, select

from models import Action, PmsType, Reconciliation, Trigger, Verdict
from models.outbox import OutboxEvent
from reconciler.usecases.reconcile import reconcile
from worker import db


def _rows(table) -> int:  # noqa: ANN001
    with db.new_session() as session:
        return session.exec(select(func.count()).select_from(table)).one()

# Both runs here are one thread's, the second inside the first's Halo call: over Valkey the work
# queue's claim makes the second wait, as it does across workers (``tests/integration`` holds that).
# The race the version column settles is the one two claims cannot prevent (a claim lost to its
# expiry, a person deciding), so these run without a work queue.
pytestmark = pytest.mark.parametrize("world", ["fake"], indirect=True)


def test_racing_reconciliations_switch_once(database, world):
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
    assert (_rows(OutboxEvent), _rows(Reconciliation)) == (1, 2)  # the winner's event; an audit row each


def test_an_old_answer_never_overwrites_a_newer_switch(database, world):
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
    assert (_rows(OutboxEvent), _rows(Reconciliation)) == (1, 2)  # nothing of the lost write toward X

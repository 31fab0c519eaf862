"""Verify before switching: Get site status on the new GUID; pairing, automatic or with a code."""

import pytest

from models import Action, PmsType, PracticeState, TicketKind, TicketReason, TicketStatus, Verdict
from models import Availability
from reconciler.core.halo_errors import HaloPairingRefused
from worker.simulator import Fault


def test_a_best_practice_site_we_are_not_paired_with_holds_the_change_for_a_pairing_code(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.unpair(new)

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.INFRASTRUCTURE_CHANGE, Action.HELD)
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.proposed_guid) == (old, PracticeState.HELD, new)
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.status) == (
        TicketKind.CONTACT_PRACTICE, TicketReason.PAIRING_REQUIRED, TicketStatus.OPEN)
    assert "pairing code" in ticket.detail
    assert f"halo-reconciler practices pair {pid} --pairing-code CODE" in ticket.detail
    assert world.sim.pairings() == 0  # a Best Practice site is never paired without the practice's code

    world.reconcile(pid)  # the same hold again: one ticket, counted
    [ticket] = world.tickets()
    assert ticket.occurrences == 2

    world.sim.set_pairing_code(new, "RIGHT-CODE")
    with pytest.raises(HaloPairingRefused):
        world.pair(pid, "WRONG-CODE")
    assert (world.practice(pid).halo_guid, world.practice(pid).state) == (old, PracticeState.HELD)

    mark = len(world.sim.requests)
    decided = world.pair(pid, "RIGHT-CODE")

    assert decided.done
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.proposed_guid) == (new, PracticeState.ACTIVE, None)
    assert world.sim.checked_active(new, since=mark)
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED]
    assert world.history(pid) == [(old, "onboarded"), (new, "paired")]
    assert world.reconcile(pid).verdict == Verdict.UNCHANGED


@pytest.mark.parametrize("pms_type", [PmsType.ZEDMED, PmsType.D4W], ids=["zedmed", "d4w"])
def test_zedmed_and_d4w_sites_are_paired_by_the_worker_then_switched(world, pms_type):
    pid = world.onboard(pms_id="P1", pms_type=pms_type)
    assert world.sim.pairings() == 1  # onboarding paired
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(pms_type, "P1")
    world.sim.unpair(new)
    mark = len(world.sim.requests)

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.INFRASTRUCTURE_CHANGE, Action.SWITCHED)
    assert world.practice(pid).halo_guid == new
    assert world.sim.pairings() == 2 and world.sim.is_paired(new)
    assert world.sim.checked_active(new, since=mark)
    assert world.tickets() == []
    assert world.history(pid) == [(old, "onboarded"), (new, "infrastructure_change")]


def test_an_offline_new_site_is_still_switched_to_and_the_practice_shows_it(world):
    pid = world.onboard(pms_id="BP1")
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.set_availability(new, Availability.OFFLINE)

    assert world.reconcile(pid).action == Action.SWITCHED
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.availability) == (new, "offline")


def test_when_get_site_status_cannot_answer_nothing_switches(world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.inject(Fault("server_error", endpoint="get_site"))

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.HALO_UNAVAILABLE, Action.BACKED_OFF)
    assert world.practice(pid).halo_guid == old
    world.sim.clear_faults()
    world.clock.advance(hours=2)
    assert world.reconcile(pid).action == Action.SWITCHED
    assert world.practice(pid).halo_guid == new

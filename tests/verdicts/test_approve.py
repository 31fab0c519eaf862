"""`approve` asks Halo again: it switches only to the proposal Halo still shows."""

import pytest

from models import Action, PmsType, PracticeState, SiteStatus, TicketReason, TicketStatus, Verdict
from reconciler.core.errors import InvalidState
from reconciler.core.halo_errors import HaloUnavailable
from worker.simulator import Fault


def held_business_change(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    old = world.practice(pid).halo_guid
    proposal = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.rename(proposal, "Another Practice Pty Ltd")
    assert world.reconcile(pid).verdict == Verdict.BUSINESS_CHANGE
    assert world.practice(pid).proposed_guid == proposal
    return pid, old, proposal


def test_approve_switches_when_halo_still_shows_the_proposal_and_checks_its_status(world):
    pid, old, proposal = held_business_change(world)
    finds, mark = world.finds("BP1"), len(world.sim.requests)
    world.clock.advance(minutes=5)

    decided = world.approve(pid)

    assert decided.done
    assert world.finds("BP1") == finds + 1 and world.sim.checked_active(proposal, since=mark)
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.last_verified_at) == (
        proposal, PracticeState.ACTIVE, world.clock())


def test_approve_after_halo_moved_the_proposal_switches_nothing_and_holds_the_new_one(world):
    pid, old, proposal = held_business_change(world)
    moved = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")  # B removed, C authoritative

    decided = world.approve(pid)

    assert not decided.done and moved in decided.message and proposal in decided.message
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.proposed_guid) == (old, PracticeState.HELD, moved)
    [ticket] = [t for t in world.tickets() if t.status == TicketStatus.OPEN]
    assert ticket.reason == TicketReason.BUSINESS_CHANGE
    assert f"Approve did not switch to {proposal}" in ticket.detail
    assert world.history(pid) == [(old, "onboarded")]


def test_approve_after_the_proposal_was_removed_leaves_held_and_switches_nothing(world):
    pid, old, proposal = held_business_change(world)
    world.sim.set_status(proposal, SiteStatus.REMOVED)

    decided = world.approve(pid)

    assert not decided.done
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.proposed_guid) == (old, PracticeState.ACTIVE, None)
    assert practice.last_verdict == Verdict.NOT_FOUND
    open_reasons = [t.reason for t in world.tickets() if t.status == TicketStatus.OPEN]
    assert open_reasons == [TicketReason.NOT_FOUND]


def test_a_proposal_does_not_outlive_not_found_so_approve_has_nothing_to_switch(world):
    pid, old, proposal = held_business_change(world)
    world.sim.remove_practice(PmsType.BEST_PRACTICE, "BP1")

    assert world.reconcile(pid).verdict == Verdict.NOT_FOUND
    practice = world.practice(pid)
    assert (practice.state, practice.proposed_guid) == (PracticeState.ACTIVE, None)
    with pytest.raises(InvalidState):
        world.approve(pid)
    assert world.practice(pid).halo_guid == old


@pytest.mark.parametrize("make", ["ambiguous", "flapping"])
def test_a_proposal_does_not_outlive_ambiguous_or_flapping(world, make):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    old = world.practice(pid).halo_guid
    if make == "flapping":
        first = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
        assert world.reconcile(pid).action == Action.SWITCHED
    world.sim.rename(world.practice(pid).halo_guid, "Another Practice")
    assert world.reconcile(pid).verdict == Verdict.BUSINESS_CHANGE
    if make == "ambiguous":
        world.sim.add_site(PmsType.BEST_PRACTICE, "BP1", practice_name="Halo Clinic South", authoritative=True)
    else:  # Halo's authority goes back to the GUID the practice left minutes ago
        world.sim.set_status(first, SiteStatus.REMOVED)
        world.sim.set_status(old, SiteStatus.ACTIVE)
        world.sim.set_authoritative(old, True)

    assert world.reconcile(pid).verdict == Verdict(make)
    assert world.practice(pid).proposed_guid is None and world.practice(pid).state == PracticeState.ACTIVE


def test_approve_when_halo_cannot_answer_changes_nothing(world):
    pid, old, proposal = held_business_change(world)
    before = world.practice(pid)
    world.sim.inject(Fault("server_error", endpoint="find_sites"))
    world.clock.advance(minutes=5)

    with pytest.raises(HaloUnavailable):
        world.approve(pid)

    after = world.practice(pid)
    assert (after.halo_guid, after.state, after.proposed_guid, after.last_verified_at, after.version) == (
        old, PracticeState.HELD, proposal, before.last_verified_at, before.version)

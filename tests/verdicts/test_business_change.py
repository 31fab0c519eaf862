from models import Action, PmsType, PracticeState, TicketKind, TicketReason, TicketStatus, Verdict
from reconciler.usecases import decisions
from worker import wiring


def test_renamed_practice_is_held_with_a_contact_practice_ticket(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    guid = world.practice(pid).halo_guid
    world.sim.rename(guid, "Halo Clinic North")

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.BUSINESS_CHANGE, Action.HELD)
    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.proposed_guid) == (guid, PracticeState.HELD, guid)
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.practice_id) == (
        TicketKind.CONTACT_PRACTICE, TicketReason.BUSINESS_CHANGE, pid)


def test_new_guid_and_new_name_does_not_switch_and_approve_does(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.rename(new, "Another Practice Pty Ltd")

    result = world.reconcile(pid)

    assert result.verdict == Verdict.BUSINESS_CHANGE
    assert world.practice(pid).halo_guid == old
    assert world.practice(pid).proposed_guid == new

    assert world.approve(pid).done

    practice = world.practice(pid)
    assert (practice.halo_guid, practice.state, practice.practice_name) == (
        new, PracticeState.ACTIVE, "Another Practice Pty Ltd")
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED]
    assert world.history(pid) == [(old, "onboarded"), (new, "approved")]
    assert world.reconcile(pid).verdict == Verdict.UNCHANGED


def test_rejected_change_does_not_ticket_again_until_something_else_changes(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.rename(new, "Another Practice")
    world.reconcile(pid)
    with wiring.unit_of_work() as unit:
        decisions.reject(unit, practice_id=pid, now=world.clock(), actor="test-approver")
        unit.commit()

    again = world.reconcile(pid)

    assert again.verdict == Verdict.BUSINESS_CHANGE
    assert world.practice(pid).halo_guid == old
    assert world.practice(pid).state == PracticeState.ACTIVE
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED]

    world.sim.rename(new, "Yet Another Practice")
    world.reconcile(pid)
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED, TicketStatus.OPEN]


def test_case_and_white_space_are_not_a_business_change(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    world.sim.rename(world.practice(pid).halo_guid, "  HALO   clinic south ")
    assert world.reconcile(pid).verdict == Verdict.UNCHANGED
    assert world.practice(pid).practice_name == "Halo Clinic South"  # the raw value is kept


def test_a_change_right_after_a_clean_verification_explains_the_persisting_403s(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    guid = world.practice(pid).halo_guid
    world.reconcile(pid)
    world.forbidden[(pid, guid)] = 3
    world.reconcile(pid)  # still unchanged at Halo: forbidden_persists
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.rename(new, "Another Practice Pty Ltd")  # ... then it changed hands

    assert world.reconcile(pid).verdict == Verdict.BUSINESS_CHANGE

    by_reason = {t.reason: t.status for t in world.tickets()}
    assert by_reason == {TicketReason.FORBIDDEN_PERSISTS: TicketStatus.RESOLVED,
                         TicketReason.BUSINESS_CHANGE: TicketStatus.OPEN}


def test_a_huge_practice_name_from_halo_is_bounded_in_the_ticket_and_the_audit(world):
    # issue 24 (Medium): Halo-controlled text was stored unbounded (a 2,000,238-character ticket detail).
    from models import Reconciliation, TicketReason
    from reconciler.core.sites import HALO_TEXT_MAX
    from worker import db
    from sqlmodel import select

    pid = world.onboard(name="Harbour Clinic", pms_id="BPHUGE")
    world.sim.rename(world.practice(pid).halo_guid, "H" * 2_000_000)
    result = world.reconcile(pid)
    assert result.verdict == Verdict.BUSINESS_CHANGE
    [ticket] = [t for t in world.tickets() if t.reason == TicketReason.BUSINESS_CHANGE]
    assert HALO_TEXT_MAX <= len(ticket.detail) < 4 * HALO_TEXT_MAX
    with db.new_session() as session:
        audit = session.exec(select(Reconciliation).where(Reconciliation.practice_id == pid)
                             .order_by(Reconciliation.id.desc())).first()
    assert len(str(audit.halo_answer)) < 4 * HALO_TEXT_MAX and len(audit.detail) < 4 * HALO_TEXT_MAX

from models import Action, PracticeState, TicketKind, TicketReason, TicketStatus, Verdict


def test_unchanged_marks_verified_with_one_call_and_no_ticket(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    before = world.finds("BP1")
    world.clock.advance(hours=2)

    result = world.reconcile(pid)

    assert (result.verdict, result.action) == (Verdict.UNCHANGED, Action.MARKED_VERIFIED)
    assert world.finds("BP1") - before == 1
    practice = world.practice(pid)
    assert practice.last_verified_at == world.clock.now
    assert practice.state == PracticeState.ACTIVE
    assert world.tickets() == []


def test_403s_that_triggered_the_first_look_are_not_persistence(world):
    pid = world.onboard()
    world.forbidden[(pid, world.practice(pid).halo_guid)] = 40
    assert world.reconcile(pid).verdict == Verdict.UNCHANGED
    assert world.tickets() == []


def test_persisting_403s_open_forbidden_persists_then_resolve_when_they_stop(world):
    pid = world.onboard()
    guid = world.practice(pid).halo_guid
    world.reconcile(pid)  # Halo confirms the GUID in use
    world.forbidden[(pid, guid)] = 3  # ... and 403s keep coming

    first = world.reconcile(pid)

    assert first.verdict == Verdict.UNCHANGED
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.practice_id) == (
        TicketKind.CONTACT_HALO_SUPPORT, TicketReason.FORBIDDEN_PERSISTS, pid)
    assert first.ticket_id == ticket.id

    world.forbidden[(pid, guid)] = 0
    world.clock.advance(hours=2)
    world.reconcile(pid)

    [ticket] = world.tickets()
    assert ticket.status == TicketStatus.RESOLVED


def test_two_403s_are_below_the_threshold(world):
    pid = world.onboard()
    world.reconcile(pid)
    world.forbidden[(pid, world.practice(pid).halo_guid)] = 2
    assert world.reconcile(pid).verdict == Verdict.UNCHANGED
    assert world.tickets() == []

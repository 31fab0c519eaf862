from models import TicketKind, TicketReason, TicketStatus, Trigger, Verdict
from worker.simulator import Fault


def test_401_opens_check_integration_and_stops_automatic_calls_until_a_manual_run_succeeds(world):
    first, second = world.onboard(pms_id="BP1"), world.onboard(pms_id="BP2")
    world.sim.inject(Fault("unauthorized"))

    assert world.reconcile(first).verdict == Verdict.UNAUTHORIZED
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.practice_id) == (
        TicketKind.CHECK_INTEGRATION, TicketReason.UNAUTHORIZED, None)

    calls = world.sim.call_count("find_sites")
    skipped = world.reconcile(second, trigger=Trigger.SWEEP)
    assert skipped.skipped == "key_refused"
    assert world.sim.call_count("find_sites") == calls

    world.sim.clear_faults()
    manual = world.reconcile(second, trigger=Trigger.MANUAL)
    assert manual.verdict == Verdict.UNCHANGED
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED]
    assert world.reconcile(first, trigger=Trigger.SWEEP).verdict == Verdict.UNCHANGED

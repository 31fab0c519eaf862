from models import TicketKind, TicketReason, TicketStatus, Trigger, Verdict
from reconciler.core.breaker import fingerprint
from tests.verdicts.conftest import KEY
from worker.simulator import Fault


def test_401_opens_check_integration_and_stops_automatic_calls_until_a_manual_run_succeeds(world):
    first, second = world.onboard(pms_id="BP1"), world.onboard(pms_id="BP2")
    world.sim.inject(Fault("unauthorized"))

    assert world.reconcile(first).verdict == Verdict.UNAUTHORIZED
    [ticket] = world.tickets()
    assert (ticket.kind, ticket.reason, ticket.practice_id) == (
        TicketKind.CHECK_INTEGRATION, TicketReason.UNAUTHORIZED, None)
    # The breaker is the refused key's, named by its fingerprint and never by the key.
    [state] = world.breaker.states()
    assert state.scope == f"key:{fingerprint(KEY)}" and KEY not in state.scope

    calls = world.sim.call_count("find_sites")
    skipped = world.reconcile(second, trigger=Trigger.SWEEP)
    assert skipped.skipped == "breaker_open"
    assert world.sim.call_count("find_sites") == calls

    world.sim.clear_faults()
    manual = world.reconcile(second, trigger=Trigger.MANUAL)  # an operator tests the key: it closes the breaker
    assert manual.verdict == Verdict.UNCHANGED
    assert [t.status for t in world.tickets()] == [TicketStatus.RESOLVED]
    assert world.breaker.states() == [] and world.requeued == []  # the manual run was the kept one's
    assert world.reconcile(first, trigger=Trigger.SWEEP).verdict == Verdict.UNCHANGED

"""Halo misbehaving, seen by a real worker process over HTTP: bounded calls, the right end state, and
no switch on anything that did not parse.

Each case moves one practice to a new GUID, makes the simulator misbehave for its Find sites calls,
and reports a 403 for the old GUID.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from models import Action, PmsType, Practice, Reconciliation, Ticket, Verdict
from tests.reliability.conftest import count, rows
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers
from worker import admin
from worker.hooks import report_forbidden
from worker.simulator.faults import Fault

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT = 1.0


@dataclass(frozen=True)
class Case:
    what: str
    fault: Fault
    calls: int          # Find sites calls the run may make: the retries are bounded
    verdict: Verdict
    switched: bool


CASES = [
    Case("429 once, Retry-After 2 s", Fault("rate_limited", endpoint="find_sites", retry_after=2, times=1),
         2, Verdict.INFRASTRUCTURE_CHANGE, True),
    Case("a burst of three 503s", Fault("server_error", endpoint="find_sites", status=503, times=3),
         4, Verdict.INFRASTRUCTURE_CHANGE, True),
    Case("502 on every call", Fault("server_error", endpoint="find_sites", status=502),
         4, Verdict.HALO_UNAVAILABLE, False),
    Case("two calls slower than the client waits", Fault("timeout", endpoint="find_sites", delay=3, times=2),
         3, Verdict.INFRASTRUCTURE_CHANGE, True),
    Case("an HTML body instead of JSON", Fault("non_json", endpoint="find_sites"),
         1, Verdict.HALO_UNAVAILABLE, False),
    Case("JSON that does not match the schema", Fault("garbage_json", endpoint="find_sites"),
         1, Verdict.HALO_UNAVAILABLE, False),
    Case("the sites go offline", Fault("offline"),
         1, Verdict.INFRASTRUCTURE_CHANGE, True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.fault.kind + (f"-{c.fault.times}" if c.fault.times else "") for c in CASES])
def test_halo_fault(case, stack, tmp_path, observe):
    sim, env = stack
    env = {**env, "HALO_RECONCILER_HALO_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT),
           "HALO_RECONCILER_HALO_BACKOFF_BASE_SECONDS": "0.1"}
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP7", practice_name="Bay Clinic")
    practice = admin.onboard("BestPractice", "BP7")
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP7")
    sim.reset_counters()
    sim.inject(case.fault)

    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    try:
        assert report_forbidden(practice.halo_guid, "Forbidden")
        wait_until(lambda: count(Reconciliation, Reconciliation.practice_id == practice.id) >= 1, timeout=60)
        [run] = rows(Reconciliation, Reconciliation.practice_id == practice.id)
        [now] = rows(Practice, Practice.id == practice.id)
        calls = sim.call_count("find_sites")
        assert run.verdict == case.verdict
        assert calls == case.calls
        assert now.halo_guid == (new if case.switched else practice.halo_guid)
        if not case.switched:
            assert run.action == Action.BACKED_OFF and now.next_attempt_at is not None
            assert count(Ticket) == 0  # Halo's trouble is retried, not put on a person's desk
        if case.fault.kind == "rate_limited":
            times = [at for at, endpoint, _, _ in sim.request_log if endpoint == "find_sites"]
            gap = times[1] - times[0]
            assert gap >= case.fault.retry_after - 0.05, "called again before Retry-After expired"
        observe(fault=f"Halo: {case.what}", how="one moved practice reported by its old GUID; fault on its Find sites calls",
                observed=f"{calls} Find sites call(s); verdict {run.verdict}, action {run.action}"
                         + (f"; second call {gap:.2f} s after the 429" if case.fault.kind == "rate_limited" else ""))
    finally:
        stop_workers([worker])

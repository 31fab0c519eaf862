"""Two workers and two beats against one Redis and one PostgreSQL during a storm.

The beats sweep every two seconds and treat every practice as stale, so sweeps race the storm's
reconciliations for the same practices the whole time: still one switch per moved practice, one
ticket per business change, nothing touched that did not change.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from models import Action, PmsType, Practice, Reconciliation, Ticket, TicketReason
from tests.reliability.conftest import count, rows, start_beats, start_ready_workers, stop_workers, wait_until
from worker import admin
from worker.hooks import report_forbidden

pytestmark = pytest.mark.integration


def test_two_workers_two_beats_one_switch_one_ticket(stack, tmp_path, observe):
    sim, env = stack
    env = {**env, "HALO_RECONCILER_SWEEP_STALE_AFTER_SECONDS": "1", "HALO_RECONCILER_SWEEP_INTERVAL_SECONDS": "2"}
    sim.set_latency(0.05)
    old, ids = {}, []
    for i in range(60):
        sim.add_practice(pms_type=PmsType.ZEDMED, pms_id=f"Z{i}", practice_name=f"Zed Clinic {i}")
        out = admin.onboard("Zedmed", f"Z{i}")
        ids.append(out.id)
        old[out.id] = out.halo_guid
    moved, sold, steady = ids[:40], ids[40:50], ids[50:]
    new = {pid: sim.change_guid(PmsType.ZEDMED, f"Z{ids.index(pid)}") for pid in moved + sold}
    for pid in sold:
        sim.rename(new[pid], f"New Owners {pid} Pty Ltd")

    workers = start_ready_workers(env, tmp_path, count=2, concurrency=2)
    beats = start_beats(env, tmp_path, count=2)
    try:
        reports = [old[pid] for pid in ids] * 20
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(lambda guid: report_forbidden(guid, "Forbidden"), reports))

        def settled() -> bool:
            current = {p.id: p.halo_guid for p in rows(Practice)}
            return (all(current[pid] == new[pid] for pid in moved)
                    and count(Ticket, Ticket.reason == TicketReason.BUSINESS_CHANGE) == len(sold))

        assert wait_until(settled, timeout=120)
        # Several more sweeps by both beats, racing nothing now: still nothing doubled.
        sweeps_before = sum((tmp_path / f"worker{i}.log").read_text().count('"sweep_finished"') for i in range(2))
        assert wait_until(lambda: sum((tmp_path / f"worker{i}.log").read_text().count('"sweep_finished"')
                                      for i in range(2)) >= sweeps_before + 3, timeout=30)

        current = {p.id: p.halo_guid for p in rows(Practice)}
        assert {pid: current[pid] for pid in sold + steady} == {pid: old[pid] for pid in sold + steady}
        for pid in moved:
            assert count(Reconciliation, Reconciliation.practice_id == pid, Reconciliation.action == Action.SWITCHED) == 1
        for pid in sold:
            assert count(Ticket, Ticket.practice_id == pid) == 1
        assert count(Reconciliation, Reconciliation.action == Action.SWITCHED) == len(moved)
        runs = count(Reconciliation)
        sweeps = sum((tmp_path / f"worker{i}.log").read_text().count('"sweep_finished"') for i in range(2))
        observe(fault="two workers and two beats, one Redis, one PostgreSQL, during a storm",
                how="60 practices (40 moved, 10 new owners, 10 unchanged), 1,200 reports from 8 threads, "
                    "two beats sweeping every 2 s with every practice stale",
                observed=f"{runs} reconciliations and {sweeps} sweeps ran; 40 switches (one per moved practice), "
                         f"10 tickets (one per business change), the 10 unchanged untouched; "
                         f"{sim.call_count('find_sites')} Find sites calls in all, onboarding included")
    finally:
        stop_workers(beats + workers)

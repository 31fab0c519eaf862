"""The event-driven path with real parts: Valkey, PostgreSQL, the simulator over HTTP, Celery workers.

N reports for M changed practices cost at most M Find sites calls and all M end right; reports that
name replaced GUIDs cost none.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlmodel import select

from models import PmsType, Practice, Reconciliation
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers, wait_until_idle
from worker import admin, db

pytestmark = pytest.mark.integration

def guids_now(ids: list[int]) -> dict[int, str]:
    with db.new_session() as session:
        rows = session.exec(select(Practice).where(Practice.id.in_(ids))).all()
        return {p.id: p.halo_guid for p in rows}


def test_storm_costs_one_find_sites_call_per_changed_practice(stack, tmp_path):
    from worker.hooks import report_forbidden

    sim, env = stack
    changed, steady = 12, 4
    ids, old = [], {}
    for i in range(changed + steady):
        sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id=f"BP{i}", practice_name=f"Clinic {i}")
        out = admin.onboard("BestPractice", f"BP{i}")
        ids.append(out.id)
        old[out.id] = out.halo_guid
    new = {ids[i]: sim.change_guid(PmsType.BEST_PRACTICE, f"BP{i}") for i in range(changed)}
    onboarding_calls = sim.call_count("find_sites")

    workers = start_workers(env, tmp_path)
    try:
        reports = [old[ids[i % changed]] for i in range(changed * 25)]
        with ThreadPoolExecutor(8) as pool:
            taken = list(pool.map(lambda guid: report_forbidden(guid, "Forbidden"), reports))
        assert all(taken)

        wait_until(lambda: guids_now(list(new)) == new, what="every changed practice being switched")
        wait_until_idle(env["BROKER_URL"])  # any stray re-run lands before we count
        assert sim.call_count("find_sites") - onboarding_calls == changed

        # 403s that still name the replaced GUIDs cost no Halo call at all.
        before = sim.call_count("find_sites")
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(lambda guid: report_forbidden(guid), [old[pid] for pid in new] * 10))
        wait_until_idle(env["BROKER_URL"])
        assert sim.call_count("find_sites") == before

        with db.new_session() as session:
            switches = session.exec(select(Reconciliation).where(Reconciliation.action == "switched")).all()
        assert sorted(r.practice_id for r in switches) == sorted(new)
        assert guids_now(ids[changed:]) == {pid: old[pid] for pid in ids[changed:]}
    finally:
        stop_workers(workers)

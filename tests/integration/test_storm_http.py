"""The same storm through the HTTP API costs what it costs through the Python hook: one Find sites
call per changed practice, and none for reports that name a replaced GUID. Real ``serve``, real
workers, Valkey, PostgreSQL and the simulator; both paths in one run, each on its own practices.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from models import PmsType
from tests.integration.test_api import TOKEN, server  # noqa: F401 (the serve fixture, reused)
from tests.integration.test_storm import guids_now
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers, wait_until_idle
from worker import admin
from worker.hooks import report_forbidden

pytestmark = pytest.mark.integration

CHANGED, STEADY, PER_PRACTICE = 10, 3, 25


def _fleet(sim, prefix: str) -> tuple[dict[int, str], dict[int, str]]:
    """CHANGED + STEADY practices; returns (old GUID by id, new GUID by id for the changed ones)."""
    old = {}
    for i in range(CHANGED + STEADY):
        sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id=f"{prefix}{i}", practice_name=f"{prefix} Clinic {i}")
        out = admin.onboard("BestPractice", f"{prefix}{i}")
        old[out.id] = out.halo_guid
    ids = list(old)
    return old, {ids[i]: sim.change_guid(PmsType.BEST_PRACTICE, f"{prefix}{i}") for i in range(CHANGED)}


def _storm(send, old: dict[int, str], new: dict[int, str], sim, env) -> tuple[int, int]:
    """(Find sites calls for the storm, Find sites calls for the replaced-GUID reports after it)."""
    before = sim.call_count("find_sites")
    reports = [old[pid] for pid in list(new) * PER_PRACTICE]
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(send, reports))
    wait_until(lambda: guids_now(list(new)) == new, what="every changed practice being switched")
    wait_until_idle(env["BROKER_URL"])
    storm = sim.call_count("find_sites") - before
    before = sim.call_count("find_sites")
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(send, [old[pid] for pid in new] * 5))
    wait_until_idle(env["BROKER_URL"])
    return storm, sim.call_count("find_sites") - before


def test_a_storm_over_http_spends_the_find_sites_calls_of_the_hook(stack, server, tmp_path):  # noqa: F811
    sim, env = stack
    url, _ = server
    hook_old, hook_new = _fleet(sim, "HOOK")
    http_old, http_new = _fleet(sim, "HTTP")
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def over_http(guid: str) -> bool:
        response = client.post("/v1/reports", json={"guid": guid, "message": "Forbidden"})
        return response.status_code == 202 and response.json() == {"taken": True}

    workers = start_workers(env, tmp_path)
    try:
        by_hook = _storm(lambda guid: report_forbidden(guid, "Forbidden"), hook_old, hook_new, sim, env)
        by_http = _storm(over_http, http_old, http_new, sim, env)
    finally:
        stop_workers(workers)
        client.close()

    assert by_hook == (CHANGED, 0)
    assert by_http == by_hook
    assert guids_now([pid for pid in http_old if pid not in http_new]) == {
        pid: guid for pid, guid in http_old.items() if pid not in http_new}

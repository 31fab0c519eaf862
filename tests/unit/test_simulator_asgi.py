"""The simulator's ASGI app driven in process: ``httpx.ASGITransport`` for async clients and
``Simulator.handle`` / ``.transport()`` for sync ones, through the same routing table."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest

from reconciler.core.vocabulary import PmsType
from worker.simulator import Simulator, create_app

KEY = "asgi-key"
HEADERS = {"Ocp-Apim-Subscription-Key": KEY}
Q = {"practiceManagementSiteId": "P1", "practiceManagementName": "Best Practice"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def sim():
    s = Simulator(key=KEY)
    s.guid = s.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="P1", practice_name="Clinic One")
    return s


def client(sim, headers=HEADERS):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(sim)), base_url="https://halo.test",
                             headers=headers)


@pytest.mark.anyio
async def test_halo_endpoints_and_the_control_api_in_process(sim):
    async with client(sim) as http:
        found = await http.get("/integrator/sites", params=Q)
        assert found.status_code == 200 and found.json()["sites"][0]["id"] == sim.guid
        assert (await http.get(f"/integrator/sites/{sim.guid}")).status_code == 200
        assert (await http.post("/_sim/unpair", json={"guid": sim.guid})).status_code == 200
        assert (await http.get(f"/integrator/sites/{sim.guid}")).status_code == 403
        code = (await http.get(f"/_sim/sites/{sim.guid}")).json()["pairing_code"]
        paired = await http.post("/integrator/pair-site", params={**Q, "pairingCode": code})
        assert paired.status_code == 200 and paired.json()["id"] == sim.guid
        calls = (await http.get("/_sim/calls")).json()
        assert calls["total"] == 4 and {c["endpoint"] for c in calls["calls"]} == {"find_sites", "get_site", "pair_site"}


@pytest.mark.anyio
async def test_the_key_is_checked_on_every_path(sim):
    async with client(sim, headers={}) as http:
        for method, path in [("GET", "/integrator/sites"), ("GET", f"/integrator/sites/{sim.guid}"),
                             ("POST", "/integrator/pair-site"), ("GET", "/_sim/calls"), ("POST", "/_sim/seed")]:
            response = await http.request(method, path, params=Q)
            assert response.status_code == 401 and "missing subscription key" in response.json()["error"]["message"]


@pytest.mark.anyio
async def test_slow_calls_overlap_on_the_event_loop(sim):
    sim.set_latency(0.2)
    async with client(sim) as http:
        began = time.perf_counter()
        statuses: list[int] = []

        async def one() -> None:
            statuses.append((await http.get("/integrator/sites", params=Q)).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(one)
        assert statuses == [200] * 10
        assert time.perf_counter() - began < 1.0
        assert sim.max_in_flight == 10


@pytest.mark.anyio
async def test_unknown_paths_methods_and_large_bodies(sim):
    async with client(sim) as http:
        for method, path in [("GET", "/integrator/nothing"), ("DELETE", "/integrator/sites"),
                             ("GET", "/integrator/pair-site"), ("GET", "/integrator/sites/")]:
            response = await http.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.json()["error"] == {"status": 404, "statusText": "Not Found",
                                                "message": "Operation Not Found"}
        big = json.dumps({"command": {"text": "x" * (1024 * 1024 + 1)}})
        response = await http.post(f"/integrator/sites/{sim.guid}/queries/immediate", content=big)
        assert response.status_code == 413 and response.json()["error"]["status"] == 413


def test_sync_callers_route_through_the_same_table(sim):
    status, _, body = sim.handle("POST", "/integrator/pair-site", {**Q, "pairingCode": "nope"}, HEADERS, b"")
    assert status == 403
    assert sim.handle("GET", "/integrator/nothing", "", HEADERS, b"")[0] == 404
    assert sim.handle("GET", "/_sim/calls", "", {}, b"")[0] == 401
    status, _, body = sim.handle("GET", "/_sim/calls", "", HEADERS, b"")
    assert status == 200 and json.loads(body)["calls"] == [{"endpoint": "pair_site", "key": "P1", "count": 1}]
    with httpx.Client(transport=sim.transport(), base_url="https://halo.test", headers=HEADERS) as http:
        assert http.get(f"/integrator/sites/{sim.guid}").status_code == 200
        assert http.post("/_sim/unpair", json={"guid": sim.guid}).status_code == 200
        assert http.get(f"/integrator/sites/{sim.guid}").status_code == 403

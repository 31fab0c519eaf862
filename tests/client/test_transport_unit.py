"""``halo_reconciler_client`` against in-memory stand-ins (httpx.MockTransport) for Halo and the API:
the transport's rules one at a time. The same rules against a real ``serve``, worker and simulator:
``tests/client/test_client_live.py``."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

import halo_reconciler_client
from halo_reconciler_client import AsyncHaloTransport, HaloTransport, Reconciler, Report
from worker.serve.openapi import API_VERSION

OLD = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
NEW = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
HALO = "https://api.haloconnect.io"
FORBIDDEN = {"error": {"status": 403, "statusText": "Forbidden", "message": "Forbidden"}}


class World:
    """Halo, where ``OLD`` was replaced by ``NEW``, and the reconciler's API, which knows it."""

    def __init__(self, api_answer: dict | None = None, api_status: int = 200) -> None:
        self.halo_calls: list[httpx.Request] = []
        self.reports: list[dict] = []
        self.api_answer = api_answer if api_answer is not None else {
            "taken": True, "settled": True, "current_guid": NEW, "action": "switched"}
        self.api_status = api_status

    def halo(self, request: httpx.Request) -> httpx.Response:
        self.halo_calls.append(request)
        if OLD in request.url.path:
            return httpx.Response(403, json=FORBIDDEN)
        return httpx.Response(200, json={"rows": [[1]], "path": request.url.path,
                                         "body": request.content.decode() or None})

    def api(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t0ken"
        if request.url.path == "/v1/reports":
            self.reports.append(json.loads(request.content))
            return httpx.Response(self.api_status, json=self.api_answer)
        return httpx.Response(200, json={"guid": OLD, "current_guid": NEW, "practice_id": 1, "state": "active"})

    def client(self, wait: float = 2.0) -> tuple[httpx.Client, Reconciler]:
        reconciler = Reconciler("http://reconciler.test", "t0ken", transport=httpx.MockTransport(self.api))
        transport = HaloTransport(reconciler, httpx.MockTransport(self.halo), wait_seconds=wait)
        return httpx.Client(base_url=HALO, transport=transport), reconciler


def test_a_read_is_sent_again_to_the_new_guid_and_later_ones_are_rewritten():
    world = World()
    halo, _ = world.client()
    answer = halo.post(f"/integrator/sites/{OLD}/queries/immediate", json={"sql": "SELECT 1"})
    assert answer.status_code == 200
    assert answer.json()["path"] == f"/integrator/sites/{NEW}/queries/immediate"
    assert json.loads(answer.json()["body"]) == {"sql": "SELECT 1"}  # the same body, sent again
    assert world.reports == [{"guid": OLD, "message": "Forbidden", "wait_seconds": 2.0}]

    again = halo.get(f"/integrator/sites/{OLD.upper()}")  # learned: no 403, no report
    assert again.status_code == 200 and again.json()["path"] == f"/integrator/sites/{NEW}"
    assert len(world.halo_calls) == 3 and len(world.reports) == 1


def test_a_write_gets_its_403_back_but_the_next_request_goes_to_the_new_guid():
    world = World()
    halo, _ = world.client()
    assert halo.post(f"/integrator/sites/{OLD}/appointments", json={}).status_code == 403
    assert len(world.halo_calls) == 1 and len(world.reports) == 1
    assert halo.post(f"/integrator/sites/{OLD}/appointments", json={}).status_code == 200


@pytest.mark.parametrize("message", ["Caller Ip Not Allowed", "Quota exceeded for this subscription"],
                         ids=["ip", "quota"])
def test_ip_and_quota_refusals_are_reported_without_waiting_and_not_resent(message):
    world = World()
    world.halo = lambda request: (world.halo_calls.append(request) or  # type: ignore[method-assign]
                                  httpx.Response(403, json={"error": {"status": 403, "message": message}}))
    halo, _ = world.client()
    assert halo.get(f"/integrator/sites/{NEW}").status_code == 403
    assert world.reports == [{"guid": NEW, "message": message}] and len(world.halo_calls) == 1


@pytest.mark.parametrize(("status", "answer"), [
    (503, {"taken": False, "error": "busy"}),
    (200, {"taken": True, "settled": False, "current_guid": OLD, "action": None}),
    (200, {"taken": True, "settled": True, "current_guid": None, "action": None}),
    (200, ["not", "the", "api"]),
    (401, {"error": "no"}),
], ids=["not_taken", "not_settled", "unknown", "garbage", "refused"])
def test_without_a_new_guid_the_403_is_returned_as_it_was(status, answer):
    world = World(api_answer=answer, api_status=status)  # type: ignore[arg-type]
    halo, _ = world.client()
    response = halo.get(f"/integrator/sites/{OLD}/fhir/Patient")
    assert response.status_code == 403 and response.json() == FORBIDDEN
    assert len(world.halo_calls) == 1


def test_a_server_that_is_not_there_costs_a_bounded_nothing():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    reconciler = Reconciler("http://reconciler.test", "t0ken", transport=httpx.MockTransport(down))
    assert reconciler.report_forbidden(OLD) is None
    assert reconciler.current_guid(OLD) is None
    assert reconciler.current_guid("not a guid") is None
    halo = httpx.Client(base_url=HALO, transport=HaloTransport(reconciler, httpx.MockTransport(World().halo)))
    assert halo.get(f"/integrator/sites/{OLD}").status_code == 403
    assert "t0ken" not in repr(reconciler)


def test_errors_of_the_wrapped_transport_reach_the_application_as_they_are():
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    reconciler = Reconciler("http://reconciler.test", "t0ken", transport=httpx.MockTransport(World().api))
    halo = httpx.Client(base_url=HALO, transport=HaloTransport(reconciler, httpx.MockTransport(broken)))
    with pytest.raises(httpx.ReadTimeout):
        halo.get(f"/integrator/sites/{OLD}")


def test_reports_without_a_wait_and_the_current_guid():
    world = World(api_answer={"taken": True}, api_status=202)
    reconciler = Reconciler("http://reconciler.test", "t0ken", transport=httpx.MockTransport(world.api))
    assert reconciler.report_forbidden(OLD, "Forbidden") == Report(taken=True, settled=False, current_guid=None,
                                                                    action=None)
    assert world.reports == [{"guid": OLD, "message": "Forbidden"}]
    assert reconciler.current_guid(OLD) == NEW
    assert reconciler.replacement(OLD) == NEW


def test_a_chain_of_replacements_is_followed_and_a_guid_back_in_use_is_not_replaced():
    reconciler = Reconciler("http://reconciler.test", "t0ken")
    third = "0f8fad5b-d9cb-469f-a165-70867728950e"
    reconciler.learn(OLD, NEW)
    reconciler.learn(NEW, third)
    assert reconciler.replacement(OLD) == third
    reconciler.learn(third, OLD)  # it went back (after a person decided): OLD is in use again
    assert reconciler.replacement(OLD) is None and reconciler.replacement(third) == OLD


def test_the_async_transport_does_the_same():
    world = World()

    async def halo_async(request: httpx.Request) -> httpx.Response:
        return world.halo(request)

    async def api_async(request: httpx.Request) -> httpx.Response:
        return world.api(request)

    async def run() -> httpx.Response:
        reconciler = Reconciler("http://reconciler.test", "t0ken", async_transport=httpx.MockTransport(api_async))
        transport = AsyncHaloTransport(reconciler, httpx.MockTransport(halo_async), wait_seconds=1)
        async with httpx.AsyncClient(base_url=HALO, transport=transport) as halo:
            return await halo.get(f"/integrator/sites/{OLD}/queries/status/42")

    answer = asyncio.run(run())
    assert answer.status_code == 200 and answer.json()["path"] == f"/integrator/sites/{NEW}/queries/status/42"
    assert world.reports == [{"guid": OLD, "message": "Forbidden", "wait_seconds": 1.0}]


def test_the_client_version_is_the_api_version():
    assert halo_reconciler_client.__version__ == halo_reconciler_client.API_VERSION == API_VERSION


def test_a_request_sent_while_a_report_is_on_its_way_waits_for_it_and_pays_no_403():
    import threading

    world = World()
    answered = threading.Event()
    reported = threading.Event()
    api = world.api

    def slow_api(request: httpx.Request) -> httpx.Response:
        reported.set()
        answered.wait(5)  # the reconciliation takes a while
        return api(request)

    reconciler = Reconciler("http://reconciler.test", "t0ken", transport=httpx.MockTransport(slow_api))
    waiting = threading.Event()
    in_flight = reconciler.report_in_flight

    def spied(guid: str):  # noqa: ANN202
        found = in_flight(guid)
        if found is not None:
            waiting.set()
        return found

    reconciler.report_in_flight = spied  # type: ignore[method-assign]
    halo = httpx.Client(base_url=HALO, transport=HaloTransport(reconciler, httpx.MockTransport(world.halo)))
    results: dict[str, httpx.Response] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", halo.get(f"/integrator/sites/{OLD}")))
    first.start()
    assert reported.wait(5)
    second = threading.Thread(target=lambda: results.setdefault("second", halo.get(f"/integrator/sites/{OLD}")))
    second.start()
    assert waiting.wait(5)  # the second request found the first one's report on its way, before its answer
    answered.set()
    first.join(5)
    second.join(5)
    assert results["first"].status_code == results["second"].status_code == 200
    forbidden = [r for r in world.halo_calls if OLD in r.url.path]
    assert len(forbidden) == 1 and len(world.reports) == 1  # one 403, one report, for the process

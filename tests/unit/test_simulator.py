"""The simulator's own behaviour: control operations, faults and their counts, counters, the server."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from models import PmsType, SiteStatus
from worker.simulator import Fault, FaultError, Simulator, SimulatorConfigError, serve
from worker.simulator.control import SimulatorControl
from worker.simulator.server import load_sites_file

KEY = "sim-key"
Q = {"practiceManagementSiteId": "P1", "practiceManagementName": "Best Practice"}


def find(sim, query=Q, key=KEY):
    status, _, body = sim.handle("GET", "/integrator/sites", query, {"Ocp-Apim-Subscription-Key": key}, b"")
    return status, json.loads(body) if body.startswith(b"{") else body


@pytest.fixture
def sim():
    s = Simulator(key=KEY)
    s.first = s.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="P1", practice_name="Clinic One")
    return s


def test_change_guid_removes_the_old_site_and_adds_an_authoritative_one(sim):
    new = sim.change_guid(PmsType.BEST_PRACTICE, "P1")
    _, body = find(sim)
    by_id = {s["id"]: s for s in body["sites"]}
    assert (by_id[sim.first]["status"], by_id[sim.first]["authoritative"]) == ("removed", False)
    assert (by_id[new]["status"], by_id[new]["authoritative"], by_id[new]["practiceMetadata"]["practiceName"]) == (
        "active", True, "Clinic One")


def test_rename_set_authoritative_and_status(sim):
    other = sim.add_site(PmsType.BEST_PRACTICE, "P1", authoritative=False, practice_name="Backup")
    sim.rename(sim.first, "Renamed")
    sim.set_authoritative(other, True)
    sim.set_status(sim.first, SiteStatus.UNINSTALLED)
    by_id = {s["id"]: s for s in find(sim)[1]["sites"]}
    assert by_id[sim.first]["practiceMetadata"]["practiceName"] == "Renamed"
    assert (by_id[sim.first]["authoritative"], by_id[other]["authoritative"]) == (False, True)
    assert by_id[sim.first]["status"] == "uninstalled"


def test_absent_authoritative_flag_is_left_out(sim):
    sim.set_authoritative(sim.first, None)
    assert "authoritative" not in find(sim)[1]["sites"][0]


def test_the_pms_name_takes_the_query_spelling(sim):
    status, body = find(sim, {"practiceManagementSiteId": "P1", "practiceManagementName": "BestPractice"})
    assert status == 400 and "Best Practice" in body["error"]["message"]


def test_a_wrong_or_missing_key_is_401(sim):
    assert find(sim, key="nope")[0] == 401
    status, _, body = sim.handle("GET", "/integrator/sites", Q, {}, b"")
    assert status == 401 and b"missing subscription key" in body


@pytest.mark.parametrize("kind,status", [
    ("ip_not_allowed", 403), ("quota_exceeded", 403), ("unauthorized", 401), ("rate_limited", 429),
    ("server_error", 503), ("non_json", 200), ("garbage_json", 200),
])
def test_each_fault_for_a_number_of_calls(sim, kind, status):
    sim.inject(Fault(kind, endpoint="find_sites", times=2))
    assert [find(sim)[0] for _ in range(3)] == [status, status, 200]


def test_faults_narrow_by_pms_id_and_endpoint(sim):
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="P2", practice_name="Two")
    sim.inject(Fault("server_error", pms_id="P2"))
    sim.inject(Fault("ip_not_allowed", endpoint="get_site"))
    assert find(sim)[0] == 200
    assert find(sim, {"practiceManagementSiteId": "P2", "practiceManagementName": "Best Practice"})[0] == 503
    assert sim.handle("GET", f"/integrator/sites/{sim.first}", "", {"Ocp-Apim-Subscription-Key": KEY}, b"")[0] == 403
    sim.clear_faults()
    assert find(sim, {"practiceManagementSiteId": "P2", "practiceManagementName": "Best Practice"})[0] == 200


def test_offline_site_refuses_immediate_queries(sim):
    sim.inject(Fault("offline"))
    assert find(sim)[1]["sites"][0]["availability"] == "offline"
    body = json.dumps({"command": {"text": "SELECT 1"}}).encode()
    status, _, _ = sim.handle("POST", f"/integrator/sites/{sim.first}/queries/immediate", "",
                              {"Ocp-Apim-Subscription-Key": KEY}, body)
    assert status == 503


def test_bad_faults_are_refused():
    for bad in [dict(kind="meteor"), dict(kind="server_error", status=418), dict(kind="latency", endpoint="x"),
                dict(kind="latency", times=0)]:
        with pytest.raises(FaultError):
            Fault(**bad)


def test_calls_are_counted_per_endpoint_and_key(sim):
    for _ in range(3):
        find(sim)
    sim.handle("GET", f"/integrator/sites/{sim.first}", "", {"Ocp-Apim-Subscription-Key": KEY}, b"")
    assert (sim.call_count("find_sites", "P1"), sim.call_count("get_site"), sim.call_count()) == (3, 1, 4)
    sim.reset_counters()
    assert sim.call_count() == 0


def test_seeding_a_hundred_thousand_practices():
    sim = Simulator()
    made = sim.seed(100_000)
    assert len(made) == 100_000 and made[0][0] == "BP-000001"
    status, _, body = sim.handle("GET", "/integrator/sites",
                                 {"practiceManagementSiteId": "BP-099999", "practiceManagementName": "Best Practice"},
                                 {}, b"")
    assert status == 200 and json.loads(body)["sites"][0]["practiceMetadata"]["practiceName"] == "Practice 099999"


def test_sites_file_loads_and_fills_in(tmp_path):
    sim = Simulator()
    path = tmp_path / "sites.json"
    path.write_text(json.dumps({"sites": [{"id": "3F2504E0-4F89-41D3-9A0C-0305E82C3301", "status": "active",
                                           "practiceMetadata": {"practiceName": "Filed", "pmsType": "Zedmed",
                                                                "practiceManagementSiteId": "Z9"}}]}))
    assert load_sites_file(sim, path) == 1
    [site] = sim.sites()
    assert (site["id"], site["pmsType"], site["practiceManagementName"]) == (
        "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "Zedmed", "Zedmed")
    for bad in ['{"sites": 3}', "not json", '{"sites": [{"status": "active"}]}']:
        path.write_text(bad)
        with pytest.raises(SimulatorConfigError):
            load_sites_file(sim, path)


def test_the_server_overlaps_slow_calls_and_keeps_connections_alive(sim):
    sim.set_latency(0.2)
    with serve(sim) as server, httpx.Client(base_url=server.url, headers={"Ocp-Apim-Subscription-Key": KEY}) as client:
        threads = [threading.Thread(target=lambda: client.get("/integrator/sites", params=Q)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sim.max_in_flight >= 4
        first = client.get("/integrator/sites", params=Q)
        assert first.headers.get("connection", "keep-alive").lower() != "close"


def test_the_control_api_from_another_process_view(sim):
    with serve(sim) as server:
        control = SimulatorControl(server.url, key=KEY)
        guid = control.add_practice(pms_type="Zedmed", pms_id="Z1", practice_name="Zed")
        new = control.change_guid("Zedmed", "Z1")
        control.rename(new, "Zed Two")
        control.inject("server_error", times=1, endpoint="find_sites")
        assert find(sim, {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"})[0] == 503
        _, body = find(sim, {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"})
        assert {s["id"] for s in body["sites"]} == {guid, new}
        assert control.call_count("find_sites") == 2
        with pytest.raises(RuntimeError):
            control.inject("meteor")
        control.close()

"""The simulator's control API over real HTTP and in process: the pairing, status and odd-property
operations, the request log, and the key it asks for when the simulator has one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reconciler.core.vocabulary import PmsType
from tests.utils.servers import port_open
from worker.simulator import Simulator, serve
from worker.simulator.control import OPERATIONS, SimulatorControl

KEY = "control-key"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    sim = Simulator(key=KEY)
    with serve(sim) as running:
        yield running


@pytest.fixture
def control(server):
    with SimulatorControl(server.url, key=KEY) as client:
        yield client


def halo(server, method, path, **kw):
    return httpx.request(method, f"{server.url}{path}", headers={"Ocp-Apim-Subscription-Key": KEY}, **kw)


def test_unpair_pair_and_pairing_codes(server, control):
    guid = control.add_practice(pms_type="BestPractice", pms_id="BP1", practice_name="Bondi", pairing_code="ABC123")
    assert (control.is_paired(guid), control.pairing_code(guid)) == (True, "ABC123")
    control.unpair(guid)
    assert halo(server, "GET", f"/integrator/sites/{guid}").status_code == 403
    control.set_pairing_code(guid, "ZZZ999")
    query = {"practiceManagementSiteId": "BP1", "practiceManagementName": "Best Practice", "pairingCode": "ZZZ999"}
    assert halo(server, "POST", "/integrator/pair-site", params=query).status_code == 200
    assert control.is_paired(guid)
    control.unpair(guid)
    control.pair(guid)
    assert halo(server, "GET", f"/integrator/sites/{guid}").status_code == 200
    with pytest.raises(RuntimeError, match="400"):
        control.set_pairing_code(control.add_practice(pms_type="Zedmed", pms_id="Z", practice_name="Z"), "ABC")


def test_a_guid_change_to_an_unpaired_initialising_site(server, control):
    old = control.add_practice(pms_type="Zedmed", pms_id="Z1", practice_name="Zed")
    new = control.change_guid("Zedmed", "Z1", paired=False, status="initialising")
    site = control.site(new)
    assert (site["paired"], site["status"], site["pairing_code"], site["pms_id"]) == (False, "initialising", None, "Z1")
    assert control.site(old)["status"] == "removed"
    assert halo(server, "GET", f"/integrator/sites/{new}").status_code == 403
    control.pair(new)
    assert halo(server, "GET", f"/integrator/sites/{new}").json()["status"] == "initialising"
    control.activate(new)
    assert halo(server, "GET", f"/integrator/sites/{new}").json()["status"] == "active"
    control.set_initialising(new)
    assert control.site(new)["status"] == "initialising"


def test_odd_properties_on_a_removed_site_are_served_as_given(server, control):
    guid = control.add_practice(pms_type="Zedmed", pms_id="Z1", practice_name="Zed")
    control.set_status(guid, "removed")
    control.set_site_properties(guid, {"availability": "sideways", "haloLinkVersion": None, "catalogue": "n/a"})
    [site] = halo(server, "GET", "/integrator/sites",
                  params={"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"}).json()["sites"]
    assert (site["availability"], site["catalogue"], site["status"]) == ("sideways", "n/a", "removed")
    assert "haloLinkVersion" not in site and site["id"] == guid
    control.clear_site_properties(guid)
    [site] = [s for s in control.sites() if s["id"] == guid]
    assert site["availability"] == "online" and "haloLinkVersion" in site
    with pytest.raises(RuntimeError, match="400"):
        control.set_site_properties(guid, {"id": "something-else"})


def test_the_request_log_and_availability(server, control):
    guid = control.add_practice(pms_type="D4w", pms_id="D1", practice_name="Dental")
    control.set_availability(guid, "unreachable")
    assert halo(server, "GET", f"/integrator/sites/{guid}").json()["availability"] == "unreachable"
    halo(server, "GET", "/integrator/sites/not-a-guid")
    log = control.requests()
    assert [(r["endpoint"], r["key"], r["status"]) for r in log] == [
        ("get_site", guid, 200), ("get_site", "not-a-guid", 400)]
    assert control.requests(limit=1)[0]["status"] == 400
    control.reset_counters()
    assert control.requests() == []


def test_the_control_api_asks_for_the_key_when_the_simulator_has_one(server):
    for operation in OPERATIONS:
        path = "/_sim" + operation.path.replace("{guid}", "3f2504e0-4f89-41d3-9a0c-0305e82c3301")
        for headers in ({}, {"Ocp-Apim-Subscription-Key": "wrong"}):
            response = httpx.request(operation.method, server.url + path, headers=headers, json={})
            assert response.status_code == 401, (operation, headers)
            assert set(response.json()["error"]) == {"status", "statusText", "message"}
    assert server.sim.sites() == []
    with SimulatorControl(server.url, key="wrong") as wrong, pytest.raises(RuntimeError, match="401"):
        wrong.calls()


def test_the_control_client_takes_the_key_from_the_environment(server, monkeypatch):
    monkeypatch.delenv("HALO_SUBSCRIPTION_KEY", raising=False)
    monkeypatch.setenv("HALO_SIMULATOR_KEY", KEY)
    with SimulatorControl(server.url) as control:
        assert control.calls()["total"] == 0
    monkeypatch.delenv("HALO_SIMULATOR_KEY")
    monkeypatch.setenv("HALO_SUBSCRIPTION_KEY", KEY)
    with SimulatorControl(server.url) as control:
        assert control.calls()["total"] == 0


def test_without_a_key_the_control_api_is_open():
    with serve(Simulator()) as server, SimulatorControl(server.url, key="") as control:
        guid = control.add_practice(pms_type="Zedmed", pms_id="Z1", practice_name="Zed")
        assert control.site(guid)["paired"] is True


def test_unknown_control_operations_and_bad_fields_are_refused(server, control):
    response = httpx.post(f"{server.url}/_sim/meteor", headers={"Ocp-Apim-Subscription-Key": KEY})
    assert response.status_code == 404 and "no control operation" in response.json()["error"]["message"]
    response = httpx.put(f"{server.url}/_sim/calls", headers={"Ocp-Apim-Subscription-Key": KEY})
    assert response.status_code == 404
    for call in [lambda: control.unpair("not-a-guid"), lambda: control.site("3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
                 lambda: control.change_guid("Zedmed", "nobody"), lambda: control.add_site("Zedmed", "Z", paired="yes")]:
        with pytest.raises(RuntimeError, match="400"):
            call()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_simulator_command_serves_a_sites_file_and_stops_on_a_signal(tmp_path, sig):
    sites = tmp_path / "sites.json"
    sites.write_text(json.dumps({"sites": [
        {"id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "paired": False, "pairingCode": "FILE01",
         "practiceMetadata": {"pmsType": "BestPractice", "practiceManagementSiteId": "B9", "practiceName": "Filed"}}]}))
    env = {k: v for k, v in os.environ.items() if k not in ("HALO_SIMULATOR_KEY", "HALO_SUBSCRIPTION_KEY")}
    env.update(HALO_RECONCILER_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "simulator", "--port", "0", "--key", KEY,
                             "--sites", str(sites)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        url = line.split()[-1]
        port = int(url.rsplit(":", 1)[1])
        headers = {"Ocp-Apim-Subscription-Key": KEY}
        guid = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
        assert httpx.get(f"{url}/integrator/sites/{guid}", headers=headers).status_code == 403
        assert httpx.get(f"{url}/_sim/calls").status_code == 401
        query = {"practiceManagementSiteId": "B9", "practiceManagementName": "Best Practice", "pairingCode": "FILE01"}
        assert httpx.post(f"{url}/integrator/pair-site", params=query, headers=headers).status_code == 200
        with httpx.Client(base_url=url, headers=headers) as idle:  # a kept-alive connection must not hold it up
            assert idle.get(f"/integrator/sites/{guid}").status_code == 200
            proc.send_signal(sig)
            assert proc.wait(timeout=15) == 0
        assert not port_open(port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

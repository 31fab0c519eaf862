"""Pairing in the simulator: Pair with a site, unpaired sites answering 403, and the control API
that sets it up; answers validated against the in-tree subset of Halo's OpenAPI document."""

from __future__ import annotations

import json
import warnings
from urllib.parse import urlencode

import pytest
from openapi_core.testing import MockRequest, MockResponse

from reconciler.core.vocabulary import PmsType, SiteStatus
from worker.simulator import Fault, Simulator, SimulatorConfigError
from worker.simulator.app import NOT_PAIRED, PAIRING_CODE_MISSING, PAIRING_CODE_REFUSED

with warnings.catch_warnings():  # Starlette 1.x would rather its test client ran on httpx2
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from starlette.testclient import TestClient

halo_openapi_module = pytest.importorskip("tests.utils.halo_openapi")

KEY = "pairing-key"
HOST = "https://api.haloconnect.io"
PAIR = "/integrator/pair-site"
GET = "/integrator/sites/{siteId}"
IMMEDIATE = "/integrator/sites/{siteId}/queries/immediate"
FIND = "/integrator/sites"
SQL = json.dumps({"command": {"text": "SELECT 1"}}).encode()
HEADERS = {"Ocp-Apim-Subscription-Key": KEY}


@pytest.fixture
def sim():
    s = Simulator(key=KEY)
    s.bp = s.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Bondi", pairing_code="ABC123")
    s.zed = s.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z1", practice_name="Zed Clinic", paired=False)
    s.d4w = s.add_practice(pms_type=PmsType.D4W, pms_id="D1", practice_name="Dental", paired=False)
    return s


@pytest.fixture
def http(sim):
    with TestClient(sim.app(), base_url=HOST, headers=HEADERS) as client:
        yield client


def validated(response, method: str, path: str, pattern: str, query=None, body: bytes = b"",
              request_valid: bool = True):
    """Validate a response from the ASGI app against the document (and the request, when it is meant
    to be valid); return its JSON."""
    headers = dict(HEADERS)
    if body:
        headers["Content-Type"] = "application/json"
    view_args = {"siteId": path.split("/")[3]} if "{siteId}" in pattern else None
    request = MockRequest(HOST, method.lower(), path, path_pattern=pattern, args=query or {}, headers=headers,
                          data=body or None, view_args=view_args)
    mock = MockResponse(response.content, status_code=response.status_code, headers=dict(response.headers),
                        content_type=response.headers.get("content-type", "application/json"))
    spec = halo_openapi_module.halo_openapi()
    if request_valid:
        spec.validate_request(request)
        spec.validate_response(request, mock)
    else:
        errors = list(spec.iter_response_errors(request, mock))
        assert not errors, errors
    return response.json()


def pair(http, query, request_valid=True):
    response = http.post(f"{PAIR}?{urlencode(query)}")
    return response, validated(response, "POST", PAIR, PAIR, query=query, request_valid=request_valid)


def error(document) -> tuple[int, str]:
    assert set(document) == {"error"} and set(document["error"]) == {"status", "statusText", "message"}
    return document["error"]["status"], document["error"]["message"]


# --- Pair with a site --------------------------------------------------------------------------------


@pytest.mark.parametrize("pms,name,pms_id", [("zed", "Zedmed", "Z1"), ("d4w", "D4w", "D1")])
def test_zedmed_and_d4w_pair_without_a_code_and_answer_with_the_site(sim, http, pms, name, pms_id):
    guid = getattr(sim, pms)
    assert http.get(f"/integrator/sites/{guid}").status_code == 403
    response, site = pair(http, {"practiceManagementSiteId": pms_id, "practiceManagementName": name})
    assert response.status_code == 200
    assert (site["id"], site["status"], site["practiceMetadata"]["practiceManagementSiteId"]) == (guid, "active", pms_id)
    assert sim.is_paired(guid)
    assert http.get(f"/integrator/sites/{guid}").status_code == 200


def test_the_paired_site_carries_every_documented_property(sim, http):
    _, site = pair(http, {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"})
    item = halo_openapi_module.load_halo_openapi()["paths"][PAIR]["post"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    assert set(item["properties"]) <= set(site), sorted(set(item["properties"]) - set(site))


def test_best_practice_pairs_with_the_right_code(sim, http):
    sim.unpair(sim.bp)
    response, site = pair(http, {"practiceManagementSiteId": "BP1", "practiceManagementName": "Best Practice",
                                 "pairingCode": "ABC123"})
    assert response.status_code == 200 and site["id"] == sim.bp and site["pmsType"] == "BestPractice"
    assert sim.is_paired(sim.bp)


def test_best_practice_with_a_wrong_code_is_403_and_stays_unpaired(sim, http):
    sim.unpair(sim.bp)
    response, document = pair(http, {"practiceManagementSiteId": "BP1", "practiceManagementName": "Best Practice",
                                     "pairingCode": "XYZ999"})
    assert response.status_code == 403
    status, message = error(document)
    assert (status, message) == (403, PAIRING_CODE_REFUSED)
    assert "quota" not in message.lower() and "Caller Ip Not Allowed" not in message
    assert not sim.is_paired(sim.bp)


def test_best_practice_without_a_code_is_400(sim, http):
    sim.unpair(sim.bp)
    response, document = pair(http, {"practiceManagementSiteId": "BP1", "practiceManagementName": "Best Practice"})
    assert response.status_code == 400 and error(document) == (400, PAIRING_CODE_MISSING)
    assert "pairingCode" in PAIRING_CODE_MISSING
    assert not sim.is_paired(sim.bp)


def test_a_zedmed_site_ignores_a_code_it_does_not_need(sim, http):
    response, _ = pair(http, {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed",
                              "pairingCode": "ANYTHING"})
    assert response.status_code == 200


def test_an_unknown_pms_id_is_404(sim, http):
    response, document = pair(http, {"practiceManagementSiteId": "NOPE", "practiceManagementName": "Zedmed"})
    assert response.status_code == 404 and error(document)[0] == 404


@pytest.mark.parametrize("query", [
    {"practiceManagementSiteId": "BP1", "practiceManagementName": "BestPractice", "pairingCode": "ABC123"},
    {"practiceManagementName": "Zedmed"},
    {"practiceManagementSiteId": "Z1"},
], ids=["response-spelling", "no-pms-id", "no-pms-name"])
def test_bad_pairing_requests_are_400(sim, http, query):
    response, document = pair(http, query, request_valid=False)
    assert response.status_code == 400 and error(document)[0] == 400


def test_pairing_picks_the_authoritative_active_site(sim, http):
    backup = sim.add_site(PmsType.ZEDMED, "Z1", authoritative=False, practice_name="Backup copy", paired=False)
    moved = sim.change_guid(PmsType.ZEDMED, "Z1", paired=False)
    _, site = pair(http, {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"})
    assert site["id"] == moved
    assert sim.is_paired(moved) and not sim.is_paired(backup) and not sim.is_paired(sim.zed)


def test_no_active_authoritative_site_is_404(sim, http):
    sim.set_initialising(sim.zed)
    response, _ = pair(http, {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"})
    assert response.status_code == 404
    sim.activate(sim.zed)
    assert pair(http, {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"})[0].status_code == 200


def test_pairing_needs_the_key_and_is_counted_and_logged(sim, http):
    query = {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"}
    response = http.post(f"{PAIR}?{urlencode(query)}", headers={"Ocp-Apim-Subscription-Key": "wrong"})
    assert response.status_code == 401
    validated(response, "POST", PAIR, PAIR, query=query, request_valid=False)
    pair(http, query)
    assert sim.call_count("pair_site") == 2 and sim.call_count("pair_site", "Z1") == 2
    assert [(endpoint, key, status) for _, endpoint, key, status in sim.request_log] == [
        ("pair_site", "Z1", 401), ("pair_site", "Z1", 200)]


def test_faults_apply_to_pairing(sim, http):
    sim.inject(Fault("server_error", endpoint="pair_site", status=500, times=1))
    query = {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"}
    response, document = pair(http, query)
    assert response.status_code == 500 and error(document)[0] == 500
    assert not sim.is_paired(sim.zed)
    assert pair(http, query)[0].status_code == 200


def test_the_deprecated_pair_site_path_pairs_too(sim, http):
    assert http.post("/integrator/pairSite", params={"practiceManagementSiteId": "D1",
                                                     "practiceManagementName": "D4w"}).status_code == 200
    assert sim.is_paired(sim.d4w)


# --- unpaired sites ----------------------------------------------------------------------------------


def test_get_site_status_on_an_unpaired_site_is_403_in_the_envelope(sim, http):
    response = http.get(f"/integrator/sites/{sim.zed}")
    document = validated(response, "GET", f"/integrator/sites/{sim.zed}", GET)
    assert response.status_code == 403 and error(document) == (403, NOT_PAIRED)
    assert "quota" not in NOT_PAIRED.lower() and "caller ip not allowed" not in NOT_PAIRED.lower()
    assert "authoritative" not in NOT_PAIRED.split(":")[0].lower()


def test_an_immediate_query_on_an_unpaired_site_is_403(sim, http):
    path = f"/integrator/sites/{sim.zed}/queries/immediate"
    response = http.post(path, content=SQL, headers={"Content-Type": "application/json"})
    document = validated(response, "POST", path, IMMEDIATE, body=SQL)
    assert response.status_code == 403 and error(document) == (403, NOT_PAIRED)


def test_find_sites_still_lists_unpaired_sites(sim, http):
    query = {"practiceManagementSiteId": "Z1", "practiceManagementName": "Zedmed"}
    response = http.get(FIND, params=query)
    document = validated(response, "GET", FIND, FIND, query=query)
    assert [s["id"] for s in document["sites"]] == [sim.zed]


def test_a_site_unpaired_later_answers_403_and_pairs_again(sim, http):
    assert http.get(f"/integrator/sites/{sim.bp}").status_code == 200
    sim.unpair(sim.bp)
    assert http.get(f"/integrator/sites/{sim.bp}").status_code == 403
    sim.set_pairing_code(sim.bp, "NEW777")
    assert pair(http, {"practiceManagementSiteId": "BP1", "practiceManagementName": "Best Practice",
                       "pairingCode": "ABC123"})[0].status_code == 403
    assert pair(http, {"practiceManagementSiteId": "BP1", "practiceManagementName": "Best Practice",
                       "pairingCode": "new777"})[0].status_code == 200
    assert http.get(f"/integrator/sites/{sim.bp}").status_code == 200


def test_an_initialising_site_answers_get_site_status(sim, http):
    guid = sim.change_guid(PmsType.BEST_PRACTICE, "BP1", status=SiteStatus.INITIALISING)
    document = validated(http.get(f"/integrator/sites/{guid}"), "GET", f"/integrator/sites/{guid}", GET)
    assert document["status"] == "initialising"
    sim.activate(guid)
    assert http.get(f"/integrator/sites/{guid}").json()["status"] == "active"


# --- defaults, files and bad setup ---------------------------------------------------------------------


def test_defaults_paired_and_best_practice_codes():
    sim = Simulator()
    [(_, guid)] = sim.seed(1)
    zed = sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z", practice_name="Z")
    assert sim.is_paired(guid) and sim.is_paired(zed)
    code = sim.pairing_code(guid)
    assert isinstance(code, str) and len(code) == 6 and sim.pairing_code(zed) is None
    assert sim.is_paired(sim.change_guid(PmsType.BEST_PRACTICE, "BP-000001"))
    with pytest.raises(SimulatorConfigError):
        sim.set_pairing_code(zed, "ABC123")
    with pytest.raises(SimulatorConfigError):
        sim.add_practice(pms_type=PmsType.D4W, pms_id="D", practice_name="D", pairing_code="X")


def test_the_sites_file_takes_paired_and_a_pairing_code():
    sim = Simulator()
    guids = sim.load_sites({"sites": [
        {"id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "paired": False, "pairingCode": "FILE01",
         "practiceMetadata": {"pmsType": "BestPractice", "practiceManagementSiteId": "B9", "practiceName": "Filed"}},
        {"practiceMetadata": {"pmsType": "Zedmed", "practiceManagementSiteId": "Z9"}},
    ]})
    assert (sim.is_paired(guids[0]), sim.pairing_code(guids[0])) == (False, "FILE01")
    assert (sim.is_paired(guids[1]), sim.pairing_code(guids[1])) == (True, None)
    for bad in [{"paired": "no"}, {"pairingCode": 7}, {"pairingCode": "   "}]:
        with pytest.raises(SimulatorConfigError):
            sim.load_sites({"sites": [{"practiceMetadata": {"practiceManagementSiteId": "B10"}, **bad}]})

"""The simulator answers as Halo's published OpenAPI document says, so it cannot drift from the real API.

The document is the in-tree subset (``tests/data/halo-openapi-subset.json``, ``tests/utils/halo_openapi.py``).
"""

from __future__ import annotations

import json

import pytest
from openapi_core.testing import MockRequest, MockResponse

from models import PmsType, SiteStatus
from tests.utils.halo_openapi import halo_openapi as openapi
from tests.utils.halo_openapi import load_halo_openapi as spec_document
from worker.simulator import Fault, Simulator

KEY = "conformance-key"
HOST = "https://api.haloconnect.io"


@pytest.fixture
def sim():
    s = Simulator(key=KEY)
    s.guid = s.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="12345", practice_name="Halo Clinic South")
    return s


def call(sim, method, path, *, query=None, body=b"", key=KEY, pattern=None):
    headers = {"Ocp-Apim-Subscription-Key": key} if key else {}
    if body:
        headers["Content-Type"] = "application/json"
    from urllib.parse import urlencode

    status, response_headers, payload = sim.handle(method, path, urlencode(query or {}), headers, body)
    request = MockRequest(HOST, method.lower(), path, path_pattern=pattern, args=query or {}, headers=headers,
                          data=body or None)
    response = MockResponse(payload, status_code=status, headers=response_headers,
                            content_type=response_headers.get("Content-Type", "application/json"))
    return request, response


def assert_conforms(request, response):
    openapi().validate_response(request, response)


FIND = "/integrator/sites"
GET = "/integrator/sites/{siteId}"
IMMEDIATE = "/integrator/sites/{siteId}/queries/immediate"
QUERY = {"practiceManagementSiteId": "12345", "practiceManagementName": "Best Practice"}
SQL = json.dumps({"command": {"text": "SELECT 1"}}).encode()


def test_find_sites_200_conforms(sim):
    assert_conforms(*call(sim, "GET", FIND, query=QUERY, pattern=FIND))


def test_find_sites_site_carries_every_documented_property(sim):
    _, response = call(sim, "GET", FIND, query=QUERY)
    item = spec_document()["paths"][FIND]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "properties"]["sites"]["items"]
    documented = set(item["properties"])
    [site] = json.loads(response.data)["sites"]
    assert documented <= set(site), f"missing: {sorted(documented - set(site))}"
    metadata = set(item["properties"]["practiceMetadata"]["properties"])
    assert metadata <= set(site["practiceMetadata"])


@pytest.mark.parametrize("query,status", [
    ({"practiceManagementSiteId": "12345", "practiceManagementName": "BestPractice"}, 400),
    ({"practiceManagementName": "Best Practice"}, 400),
], ids=["response-spelling-is-400", "missing-pms-id-is-400"])
def test_find_sites_errors_conform(sim, query, status):
    request, response = call(sim, "GET", FIND, query=query, pattern=FIND)
    assert response.status_code == status
    _validate_response_only(request, response)  # the request is wrong on purpose: check the answer only


def _validate_response_only(request, response):
    from openapi_core.validation.response.exceptions import DataValidationError

    errors = list(openapi().iter_response_errors(request, response))
    assert not [e for e in errors if isinstance(e, DataValidationError)], errors
    assert not errors, errors


@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["missing-key", "wrong-key"])
def test_401_conforms_on_every_endpoint(sim, key):
    for method, path, pattern, body in [
        ("GET", FIND, FIND, b""), ("GET", f"/integrator/sites/{sim.guid}", GET, b""),
        ("POST", f"/integrator/sites/{sim.guid}/queries/immediate", IMMEDIATE, SQL),
    ]:
        request, response = call(sim, method, path, query=QUERY if path == FIND else None, body=body, key=key,
                                 pattern=pattern)
        assert response.status_code == 401
        assert "wrong-key" not in response.data.decode()
        _validate_response_only(request, response)


@pytest.mark.parametrize("kind", ["ip_not_allowed", "quota_exceeded"])
def test_403_conforms_on_every_endpoint(sim, kind):
    sim.inject(Fault(kind))
    for method, path, pattern, body in [
        ("GET", FIND, FIND, b""), ("GET", f"/integrator/sites/{sim.guid}", GET, b""),
        ("POST", f"/integrator/sites/{sim.guid}/queries/immediate", IMMEDIATE, SQL),
    ]:
        request, response = call(sim, method, path, query=QUERY if path == FIND else None, body=body, pattern=pattern)
        assert response.status_code == 403
        _validate_response_only(request, response)


def test_500_conforms_on_find_sites(sim):
    sim.inject(Fault("server_error", status=500))
    request, response = call(sim, "GET", FIND, query=QUERY, pattern=FIND)
    assert response.status_code == 500
    _validate_response_only(request, response)


def test_get_site_200_404_400_conform(sim):
    assert_conforms(*call(sim, "GET", f"/integrator/sites/{sim.guid}", pattern=GET))
    request, response = call(sim, "GET", "/integrator/sites/3f2504e0-4f89-41d3-9a0c-0305e82c3301", pattern=GET)
    assert response.status_code == 404
    _validate_response_only(request, response)
    request, response = call(sim, "GET", "/integrator/sites/not-a-guid", pattern=GET)
    assert response.status_code == 400
    _validate_response_only(request, response)


def test_immediate_query_200_and_errors_conform(sim):
    assert_conforms(*call(sim, "POST", f"/integrator/sites/{sim.guid}/queries/immediate", body=SQL, pattern=IMMEDIATE))
    for fault, status in [("offline", 503), ("server_error", 503)]:
        sim.inject(Fault(fault, times=1))
        request, response = call(sim, "POST", f"/integrator/sites/{sim.guid}/queries/immediate", body=SQL,
                                 pattern=IMMEDIATE)
        assert response.status_code == status
        _validate_response_only(request, response)
    sim.set_status(sim.guid, SiteStatus.REMOVED)
    request, response = call(sim, "POST", f"/integrator/sites/{sim.guid}/queries/immediate", body=SQL,
                             pattern=IMMEDIATE)
    assert response.status_code == 403 and "authoritative" in response.data.decode()
    _validate_response_only(request, response)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_undocumented_statuses_on_find_sites_still_use_the_error_envelope(sim, status):
    sim.inject(Fault("rate_limited") if status == 429 else Fault("server_error", status=status))
    _, response = call(sim, "GET", FIND, query=QUERY)
    assert response.status_code == status
    error = json.loads(response.data)["error"]
    assert (error["status"], type(error["statusText"]), type(error["message"])) == (status, str, str)
    if status == 429:
        assert float(response.headers["Retry-After"]) > 0

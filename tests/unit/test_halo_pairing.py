"""Pair with a site: the query it sends, the site it returns, and a refused pairing code."""

from __future__ import annotations

import traceback

import httpx
import pytest
from structlog.testing import capture_logs

from models import ForbiddenCause, PmsType, SiteStatus
from reconciler.core.halo_errors import (
    HaloBadRequest, HaloBadResponse, HaloError, HaloForbidden, HaloNotFound, HaloPairingRefused, HaloRateLimited,
    HaloServerError, HaloTimeout, HaloUnauthorized,
)
from tests.unit.test_halo_client import GUID, KEY, SITE, Script, client, envelope

CODE = "ABC123"


def paired() -> httpx.Response:
    return httpx.Response(200, json={**SITE, "availability": "online", "pmsType": "BestPractice"})


def test_a_best_practice_site_is_paired_with_its_code_and_the_site_halo_paired_is_returned():
    script = Script(paired())
    site = client(script).pair_site(PmsType.BEST_PRACTICE, "12345", pairing_code=CODE)
    [request] = script.requests
    assert request.method == "POST" and request.url.path == "/integrator/pair-site"
    assert dict(request.url.params) == {
        "practiceManagementSiteId": "12345", "practiceManagementName": "Best Practice", "pairingCode": CODE,
    }
    assert request.content == b""
    assert request.headers["Ocp-Apim-Subscription-Key"] == KEY
    assert (site.id, site.status, site.practice_name, site.authoritative) == (GUID, SiteStatus.ACTIVE, "Clinic", True)


@pytest.mark.parametrize("pms_type,query_name", [
    (PmsType.BEST_PRACTICE, "Best Practice"), (PmsType.ZEDMED, "Zedmed"), (PmsType.D4W, "D4w"),
])
def test_the_pms_is_sent_in_the_query_spelling_and_no_pairing_code_unless_given(pms_type, query_name):
    script = Script(paired())
    client(script).pair_site(pms_type, " 12345 ")
    params = script.requests[0].url.params
    assert params["practiceManagementName"] == query_name
    assert params["practiceManagementSiteId"] == "12345"
    assert "pairingCode" not in params


def test_the_pms_type_may_be_given_as_the_responses_spell_it():
    script = Script(paired())
    client(script).pair_site("BestPractice", "12345", CODE)
    assert script.requests[0].url.params["practiceManagementName"] == "Best Practice"


@pytest.mark.parametrize("pms_id,code", [("", None), ("   ", None), ("1", ""), ("1", "  ")],
                         ids=["empty-pms-id", "blank-pms-id", "empty-code", "blank-code"])
def test_an_empty_pms_id_or_pairing_code_is_refused_before_any_call(pms_id, code):
    script = Script(paired())
    with pytest.raises(ValueError):
        client(script).pair_site(PmsType.BEST_PRACTICE, pms_id, code)
    assert script.requests == []


@pytest.mark.parametrize("status,message", [
    (403, "Invalid pairing code."),
    (403, "Forbidden"),
    (400, "Pairing code has expired."),
    (400, "A pairingCode is required to pair with Best Practice sites."),
], ids=["403-invalid-code", "403-bare", "400-expired-code", "400-missing-code"])
def test_a_refused_pairing_is_its_own_error_and_is_not_retried(status, message):
    script = Script(httpx.Response(status, json=envelope(status, message)))
    sleeps: list[float] = []
    with pytest.raises(HaloPairingRefused) as raised:
        client(script, sleeps).pair_site(PmsType.BEST_PRACTICE, "12345", CODE)
    assert raised.value.status == status and message in str(raised.value)
    assert isinstance(raised.value, HaloError) and not isinstance(raised.value, HaloForbidden)
    assert isinstance(raised.value.__cause__, (HaloForbidden, HaloBadRequest))
    assert len(script.requests) == 1 and sleeps == []


@pytest.mark.parametrize("status,message,error,cause", [
    (403, "Caller Ip Not Allowed", HaloForbidden, ForbiddenCause.IP_NOT_ALLOWED),
    (403, "Out of call volume quota. Quota will be replenished in 00:00:30.", HaloForbidden,
     ForbiddenCause.QUOTA_EXCEEDED),
    (403, "Site is not authoritative for this practice.", HaloForbidden, ForbiddenCause.NOT_AUTHORITATIVE),
    (400, "Invalid practiceManagementName", HaloBadRequest, None),
    (401, "Subscription Key Invalid", HaloUnauthorized, None),
    (404, "Site not found.", HaloNotFound, None),
    (409, "Conflict", HaloBadResponse, None),
], ids=["403-ip", "403-quota", "403-not-authoritative", "400-spelling", "401", "404", "409"])
def test_other_refusals_keep_their_usual_type(status, message, error, cause):
    script = Script(httpx.Response(status, json=envelope(status, message)))
    with pytest.raises(error) as raised:
        client(script).pair_site(PmsType.ZEDMED, "12345")
    assert not isinstance(raised.value, HaloPairingRefused)
    if cause:
        assert raised.value.cause is cause
    assert len(script.requests) == 1


def test_pairing_is_retried_and_rate_limited_like_every_call():
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(503), paired())
    sleeps: list[float] = []
    hooks: list[str] = []
    calls: list[tuple[str, int | str]] = []
    c = client(script, sleeps, before_request=hooks.append,
               on_call=lambda endpoint, status, seconds: calls.append((endpoint, status)))
    with capture_logs() as logs:
        site = c.pair_site(PmsType.D4W, "12345")
    assert site.id == GUID
    assert sleeps == [2.0, 1.0]  # Retry-After, then 0.5 * 2 ** 1 with random() = 1
    assert hooks == ["pair_site"] * 3
    assert calls == [("pair_site", 429), ("pair_site", 503), ("pair_site", 200)]
    assert [(e["event"], e["endpoint"]) for e in logs] == [("halo_request_retried", "pair_site")] * 2
    assert c.attempts == 3


@pytest.mark.parametrize("failure,error", [
    (httpx.Response(503, json=envelope(503, "Site could not be contacted")), HaloServerError),
    (httpx.Response(429, json=envelope(429, "Rate Limit Exceeded")), HaloRateLimited),
    (httpx.ReadTimeout("slow"), HaloTimeout),
], ids=["503", "429", "timeout"])
def test_pairing_when_halo_cannot_answer_is_halo_unavailable_after_four_attempts(failure, error):
    script = Script(failure)
    with pytest.raises(error):
        client(script).pair_site(PmsType.ZEDMED, "12345")
    assert len(script.requests) == 4


@pytest.mark.parametrize("body", [{"sites": [SITE]}, {"id": "not-a-guid", "status": "active"}, {"id": GUID}],
                         ids=["a-list", "bad-guid", "no-status"])
def test_a_pairing_answer_that_is_not_a_site_is_a_bad_response(body):
    with pytest.raises(HaloBadResponse):
        client(Script(httpx.Response(200, json=body))).pair_site(PmsType.ZEDMED, "12345")


def test_neither_the_key_nor_the_pairing_code_reaches_error_text_tracebacks_or_logs():
    script = Script(httpx.Response(503, json=envelope(503, "down")), httpx.Response(403, json=envelope(403, "Nope")))
    with capture_logs() as logs, pytest.raises(HaloPairingRefused) as raised:
        client(script).pair_site(PmsType.BEST_PRACTICE, "12345", CODE)
    text = "".join(traceback.format_exception(raised.value)) + repr(logs)
    assert KEY not in text and CODE not in text

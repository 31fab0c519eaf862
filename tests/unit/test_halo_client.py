"""The Halo client's policy: errors by cause, bounded retries, Retry-After, full jitter, key hygiene."""

from __future__ import annotations

import os
import json
from email.utils import format_datetime
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given, strategies as st
from structlog.testing import capture_logs

from models import ForbiddenCause, PmsType
from reconciler.core.guids import InvalidGuid
from reconciler.adapters.halo_client import ClientClosed, HaloClient
from reconciler.core.halo_errors import (
    HaloBadRequest, HaloBadResponse, HaloForbidden, HaloNotFound, HaloRateLimited, HaloServerError, HaloTimeout,
    HaloUnauthorized,
)

KEY = "s3cret-key-abcdef123456"
GUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
SITE = {"id": GUID, "status": "active", "authoritative": True, "practiceMetadata": {"practiceName": "Clinic"}}


def envelope(status: int, message: str) -> dict:
    return {"error": {"status": status, "statusText": "x", "message": message}}


class Script:
    """A MockTransport handler answering from a list, recording every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script: Script, sleeps: list[float] | None = None, **kwargs) -> HaloClient:
    recorder = sleeps if sleeps is not None else []
    return HaloClient(base_url="https://api.haloconnect.io", subscription_key=KEY,
                      transport=httpx.MockTransport(script), sleep=recorder.append, random=lambda: 1.0, **kwargs)


def ok_sites() -> httpx.Response:
    return httpx.Response(200, json={"sites": [SITE]})


def test_find_sites_sends_the_query_spelling_and_the_key_in_its_header_only():
    script = Script(ok_sites())
    [site] = client(script).find_sites(PmsType.BEST_PRACTICE, "12345")
    request = script.requests[0]
    assert request.url.params["practiceManagementName"] == "Best Practice"
    assert request.url.params["practiceManagementSiteId"] == "12345"
    assert request.headers["Ocp-Apim-Subscription-Key"] == KEY
    assert KEY not in str(request.url)
    assert (site.id, site.practice_name) == (GUID, "Clinic")


@pytest.mark.parametrize("status,message,error,cause", [
    (400, "Invalid practiceManagementName", HaloBadRequest, None),
    (401, "Access denied due to invalid subscription key", HaloUnauthorized, None),
    (403, "Caller Ip Not Allowed", HaloForbidden, ForbiddenCause.IP_NOT_ALLOWED),
    (403, "Out of call volume quota. Quota will be replenished in 00:00:30.", HaloForbidden, ForbiddenCause.QUOTA_EXCEEDED),
    (403, "Site is not authoritative for this practice.", HaloForbidden, ForbiddenCause.NOT_AUTHORITATIVE),
    (403, "Forbidden", HaloForbidden, ForbiddenCause.OTHER),
    (404, "Site not found.", HaloNotFound, None),
], ids=["400", "401", "403-ip", "403-quota", "403-not-authoritative", "403-other", "404"])
def test_errors_by_cause_are_not_retried(status, message, error, cause):
    script = Script(httpx.Response(status, json=envelope(status, message)))
    sleeps: list[float] = []
    with pytest.raises(error) as raised:
        client(script, sleeps).find_sites(PmsType.ZEDMED, "1")
    assert len(script.requests) == 1 and sleeps == []
    assert raised.value.status == status
    if cause:
        assert raised.value.cause is cause
    assert KEY not in str(raised.value)


def test_429_waits_retry_after_then_succeeds():
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}, json=envelope(429, "slow down")), ok_sites())
    sleeps: list[float] = []
    assert client(script, sleeps).find_sites(PmsType.D4W, "1")
    assert sleeps == [7.0] and len(script.requests) == 2


def test_retry_after_as_an_http_date_is_honoured_and_capped_at_60_seconds():
    later = format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)
    script = Script(httpx.Response(429, headers={"Retry-After": later}, json=envelope(429, "x")), ok_sites())
    sleeps: list[float] = []
    client(script, sleeps).find_sites(PmsType.D4W, "1")
    assert sleeps == [60.0]


def test_429_exhausted_after_four_attempts_carries_retry_after():
    script = Script(httpx.Response(429, headers={"Retry-After": "3"}, json=envelope(429, "x")))
    sleeps: list[float] = []
    with pytest.raises(HaloRateLimited) as raised:
        client(script, sleeps).find_sites(PmsType.D4W, "1")
    assert len(script.requests) == 4 and sleeps == [3.0, 3.0, 3.0]
    assert raised.value.retry_after == 3.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_burst_then_success_backs_off_exponentially(status):
    script = Script(httpx.Response(status, json=envelope(status, "x")), httpx.Response(status), ok_sites())
    sleeps: list[float] = []
    assert client(script, sleeps).find_sites(PmsType.D4W, "1")
    assert sleeps == [0.5, 1.0]  # random() = 1: the top of the full-jitter window


def test_5xx_exhausted_is_halo_server_error():
    script = Script(httpx.Response(503, json=envelope(503, "Site could not be contacted")))
    with pytest.raises(HaloServerError) as raised:
        client(script).find_sites(PmsType.D4W, "1")
    assert raised.value.status == 503 and len(script.requests) == 4


def test_timeouts_are_retried_then_halo_timeout():
    script = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(HaloTimeout):
        client(script).find_sites(PmsType.D4W, "1")
    assert len(script.requests) == 4


@pytest.mark.parametrize("response", [
    httpx.Response(200, text="<html>busy</html>", headers={"Content-Type": "text/html"}),
    httpx.Response(200, json={"sites": [{"id": "not-a-guid", "status": "active"}]}),
    httpx.Response(200, json={"sites": [{"id": GUID, "status": "sideways"}]}),
    httpx.Response(200, json={"nothing": []}),
    httpx.Response(302, headers={"Location": "https://elsewhere"}),
], ids=["html", "bad-guid", "unknown-status", "wrong-shape", "redirect"])
def test_answers_that_do_not_parse_are_bad_responses_and_not_retried(response):
    script = Script(response)
    with pytest.raises(HaloBadResponse):
        client(script).find_sites(PmsType.D4W, "1")
    assert len(script.requests) == 1


def test_immediate_query_decodes_rows():
    import base64

    rows = [{"abn": "12 345 678 901"}]
    body = {"id": GUID, "result": {"rows": 1, "size": 1, "data": base64.b64encode(json.dumps(rows).encode()).decode()}}
    script = Script(httpx.Response(200, json=body))
    result = client(script).immediate_query(GUID, "SELECT abn FROM practice")
    assert result.rows == rows
    sent = json.loads(script.requests[0].content)
    assert sent["command"] == {"text": "SELECT abn FROM practice", "executionMode": "reader", "type": "text"}


def test_bad_guid_is_refused_before_any_call():
    script = Script(ok_sites())
    with pytest.raises(InvalidGuid):
        client(script).get_site("not-a-guid")
    assert script.requests == []


def test_the_key_never_reaches_logs_reprs_or_errors():
    script = Script(httpx.Response(503, json=envelope(503, "down")))
    c = client(script)
    with capture_logs() as logs, pytest.raises(HaloServerError) as raised:
        c.find_sites(PmsType.D4W, "1")
    assert [e["event"] for e in logs] == ["halo_request_retried"] * 3 + ["halo_request_failed"]
    assert KEY not in repr(logs) and KEY not in repr(c) and KEY not in repr(raised.value)


def test_a_closed_client_refuses_reuse():
    c = client(Script(ok_sites()))
    c.close()
    with pytest.raises(ClientClosed):
        c.find_sites(PmsType.D4W, "1")


def test_get_client_is_rebuilt_after_fork(monkeypatch):
    from worker import wiring

    first = wiring.halo_client()
    assert wiring.halo_client() is first
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as a forked child sees it (worker.per_process)
    assert wiring.halo_client() is not first


@given(attempt=st.integers(min_value=1, max_value=10), fraction=st.floats(min_value=0, max_value=1))
def test_full_jitter_stays_within_its_window(attempt, fraction):
    c = HaloClient(base_url="https://x", subscription_key=None, random=lambda: fraction)
    wait = c._wait(attempt, None)
    assert 0 <= wait <= 0.5 * 2 ** (attempt - 1)
    assert c._wait(attempt, 999) == 60.0


def test_get_site_answering_for_a_different_site_is_a_bad_response():
    # issue 24 (Low): a 200 about another site id still led to a switch.
    other = "9a1c5e52-7b3d-4c8e-a2f1-6d0b4e8c7a10"
    with pytest.raises(HaloBadResponse, match="another site"):
        client(Script(httpx.Response(200, json={**SITE, "id": other}))).get_site(GUID)
    assert client(Script(httpx.Response(200, json={**SITE, "id": GUID.upper()}))).get_site(GUID).id == GUID


def test_a_cookie_halo_sets_is_sent_back_and_a_redirect_is_not_followed():
    # The client sends through its transport, not httpx.Client.send: what that did for us is kept.
    script = Script(httpx.Response(200, json={"sites": [SITE]}, headers={"Set-Cookie": "affinity=a1; Path=/"}),
                    httpx.Response(302, headers={"Location": "https://elsewhere.example/"}))
    halo = client(script)
    halo.find_sites(PmsType.BEST_PRACTICE, "12345")
    with pytest.raises(HaloBadResponse):
        halo.find_sites(PmsType.BEST_PRACTICE, "12345")  # a 3xx is an unexpected answer, not followed
    assert "affinity=a1" in script.requests[1].headers.get("Cookie", "")
    assert [str(r.url.host) for r in script.requests] == ["api.haloconnect.io", "api.haloconnect.io"]

"""The client's retry loop: what it retries, how often, how long it waits, and what it tells."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given, settings, strategies as st
from structlog.testing import capture_logs

from models import PmsType
from reconciler.adapters.halo_client import HaloClient
from reconciler.core.halo_errors import (
    HaloBadResponse, HaloError, HaloRateLimited, HaloServerError, HaloTimeout, HaloUnavailable,
)
from tests.unit.test_halo_client import KEY, Script, client, envelope, ok_sites

RETRYABLE = [
    pytest.param(lambda: httpx.Response(429, json=envelope(429, "Rate Limit Exceeded")), HaloRateLimited, id="429"),
    pytest.param(lambda: httpx.Response(500, json=envelope(500, "x")), HaloServerError, id="500"),
    pytest.param(lambda: httpx.Response(502, json=envelope(502, "x")), HaloServerError, id="502"),
    pytest.param(lambda: httpx.Response(503, json=envelope(503, "Site could not be contacted")), HaloServerError,
                 id="503"),
    pytest.param(lambda: httpx.Response(504, json=envelope(504, "Site is offline")), HaloServerError, id="504"),
    pytest.param(lambda: httpx.ReadTimeout("slow"), HaloTimeout, id="read-timeout"),
    pytest.param(lambda: httpx.ConnectTimeout("slow"), HaloTimeout, id="connect-timeout"),
    pytest.param(lambda: httpx.ConnectError("refused"), HaloTimeout, id="connect-error"),
    pytest.param(lambda: httpx.RemoteProtocolError("dropped"), HaloTimeout, id="dropped-connection"),
]


class Recorder:
    """Stands in for the rate-limit hook and the metrics callback, in the order they were called."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def before_request(self, endpoint: str) -> None:
        self.events.append(("before", endpoint))

    def on_call(self, endpoint: str, status: int | str, seconds: float) -> None:
        assert seconds >= 0
        self.events.append(("call", endpoint, status))


@pytest.mark.parametrize("failure,error", RETRYABLE)
@pytest.mark.parametrize("max_attempts", [1, 2, 4, 6])
def test_a_retryable_failure_is_tried_max_attempts_times_then_raised_as_halo_unavailable(failure, error, max_attempts):
    script = Script(failure())
    sleeps: list[float] = []
    c = client(script, sleeps, max_attempts=max_attempts)
    with pytest.raises(error) as raised:
        c.find_sites(PmsType.ZEDMED, "1")
    assert isinstance(raised.value, HaloUnavailable)
    assert len(script.requests) == max_attempts == c.attempts
    assert len(sleeps) == max_attempts - 1


@pytest.mark.parametrize("failure,error", RETRYABLE)
def test_a_retryable_failure_followed_by_an_answer_returns_the_answer(failure, error):
    script = Script(failure(), failure(), ok_sites())
    sleeps: list[float] = []
    c = client(script, sleeps)
    assert c.find_sites(PmsType.ZEDMED, "1")
    assert len(script.requests) == 3 == c.attempts and len(sleeps) == 2


def test_every_attempt_is_announced_before_and_reported_after():
    script = Script(httpx.Response(503), httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), ok_sites())
    seen = Recorder()
    c = client(script, before_request=seen.before_request, on_call=seen.on_call)
    c.find_sites(PmsType.D4W, "1")
    assert seen.events == [
        ("before", "find_sites"), ("call", "find_sites", 503),
        ("before", "find_sites"), ("call", "find_sites", "timeout"),
        ("before", "find_sites"), ("call", "find_sites", "unreachable"),
        ("before", "find_sites"), ("call", "find_sites", 200),
    ]
    assert c.attempts == 4


def test_attempts_count_every_call_and_every_retry_of_the_client():
    script = Script(httpx.Response(503), ok_sites(), ok_sites(), httpx.Response(404, json=envelope(404, "x")))
    c = client(script)
    c.find_sites(PmsType.D4W, "1")
    c.find_sites(PmsType.D4W, "1")
    with pytest.raises(HaloError):
        c.get_site("3f2504e0-4f89-41d3-9a0c-0305e82c3301")
    assert c.attempts == 4


def test_a_rate_limit_hook_that_fails_stops_the_call_before_any_request():
    script = Script(ok_sites())

    def refuse(endpoint: str) -> None:
        raise RuntimeError("no token")

    c = client(script, before_request=refuse)
    with pytest.raises(RuntimeError):
        c.find_sites(PmsType.D4W, "1")
    assert script.requests == [] and c.attempts == 0


def test_retry_after_in_seconds_is_waited_as_given_below_the_cap():
    script = Script(httpx.Response(429, headers={"Retry-After": "2.5"}), httpx.Response(503, headers={"Retry-After": "4"}),
                    ok_sites())
    sleeps: list[float] = []
    client(script, sleeps, retry_after_cap=10).find_sites(PmsType.D4W, "1")
    assert sleeps == [2.5, 4.0]


def test_retry_after_beyond_the_cap_waits_the_cap_but_the_error_keeps_halos_value():
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}, json=envelope(429, "Rate Limit Exceeded")))
    sleeps: list[float] = []
    with pytest.raises(HaloRateLimited) as raised:
        client(script, sleeps, retry_after_cap=5).find_sites(PmsType.D4W, "1")
    assert sleeps == [5.0, 5.0, 5.0]
    assert raised.value.retry_after == 3600.0 and raised.value.status == 429


def test_retry_after_as_an_http_date_in_the_past_retries_at_once():
    earlier = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    script = Script(httpx.Response(503, headers={"Retry-After": earlier}), ok_sites())
    sleeps: list[float] = []
    client(script, sleeps).find_sites(PmsType.D4W, "1")
    assert sleeps == [0.0]


def test_an_unreadable_retry_after_falls_back_to_jittered_backoff():
    script = Script(httpx.Response(429, headers={"Retry-After": "soon"}), ok_sites())
    sleeps: list[float] = []
    client(script, sleeps, backoff_base=2.0).find_sites(PmsType.D4W, "1")
    assert sleeps == [2.0]  # random() = 1: the top of the first window


def test_backoff_is_full_jitter_drawn_once_per_wait():
    draws = iter([0.0, 0.25, 1.0])
    calls: list[float] = []

    def random() -> float:
        calls.append(1)
        return next(draws)

    sleeps: list[float] = []
    script = Script(httpx.Response(500))
    c = HaloClient(base_url="https://api.haloconnect.io", subscription_key=KEY, transport=httpx.MockTransport(script),
                   sleep=sleeps.append, random=random, backoff_base=0.5, max_attempts=4)
    with pytest.raises(HaloServerError):
        c.find_sites(PmsType.D4W, "1")
    assert sleeps == [0.0, 0.25, 2.0]  # random() * 0.5 * 2 ** (attempt - 1)
    assert len(calls) == 3  # no draw after the last attempt: nothing is waited then


@settings(max_examples=50, deadline=None)
@given(fraction=st.floats(min_value=0, max_value=1), base=st.floats(min_value=0.01, max_value=5),
       max_attempts=st.integers(min_value=1, max_value=8))
def test_every_jittered_wait_lies_within_its_window(fraction, base, max_attempts):
    sleeps: list[float] = []
    script = Script(httpx.ReadTimeout("slow"))
    c = HaloClient(base_url="https://x", subscription_key=None, transport=httpx.MockTransport(script),
                   sleep=sleeps.append, random=lambda: fraction, backoff_base=base, max_attempts=max_attempts)
    with pytest.raises(HaloTimeout):
        c.find_sites(PmsType.D4W, "1")
    assert len(sleeps) == max_attempts - 1
    for attempt, wait in enumerate(sleeps, start=1):
        assert 0 <= wait <= base * 2 ** (attempt - 1)


@pytest.mark.parametrize("status", [405, 409, 410, 418, 422, 501, 505])
def test_other_statuses_are_bad_responses_tried_once(status):
    script = Script(httpx.Response(status, json=envelope(status, "odd")))
    sleeps: list[float] = []
    with pytest.raises(HaloBadResponse) as raised:
        client(script, sleeps).find_sites(PmsType.D4W, "1")
    assert raised.value.status == status and len(script.requests) == 1 and sleeps == []


def test_the_final_timeout_is_chained_from_the_httpx_error():
    timeout = httpx.ReadTimeout("slow")
    with pytest.raises(HaloTimeout) as raised:
        client(Script(timeout)).find_sites(PmsType.D4W, "1")
    assert raised.value.__cause__ is timeout
    assert raised.value.retry_after is None and raised.value.status is None


@pytest.mark.parametrize("status,error", [(429, HaloRateLimited), (503, HaloServerError), (403, HaloError)])
def test_an_error_answer_is_chained_from_an_httpx_status_error_holding_the_response(status, error):
    with pytest.raises(error) as raised:
        client(Script(httpx.Response(status, json=envelope(status, "x")))).find_sites(PmsType.D4W, "1")
    cause = raised.value.__cause__
    assert isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == status


def test_retries_and_the_final_failure_are_logged_as_events():
    script = Script(httpx.Response(503, headers={"Retry-After": "1"}), httpx.Response(503), httpx.ReadTimeout("x"))
    with capture_logs() as logs, pytest.raises(HaloTimeout):
        client(script, max_attempts=3).find_sites(PmsType.D4W, "1")
    assert logs == [
        {"event": "halo_request_retried", "log_level": "info", "endpoint": "find_sites", "attempt": 1, "status": 503,
         "wait_seconds": 1.0},
        {"event": "halo_request_retried", "log_level": "info", "endpoint": "find_sites", "attempt": 2, "status": 503,
         "wait_seconds": 1.0},
        {"event": "halo_request_failed", "log_level": "warning", "endpoint": "find_sites", "attempts": 3,
         "status": None, "error": "HaloTimeout"},
    ]


def test_an_answer_that_is_not_retried_logs_nothing():
    script = Script(httpx.Response(401, json=envelope(401, "Subscription Key Invalid")))
    with capture_logs() as logs, pytest.raises(HaloError):
        client(script).find_sites(PmsType.D4W, "1")
    assert logs == []


@pytest.mark.parametrize("failure", [
    httpx.Response(503, json=envelope(503, "down")), httpx.Response(401, json=envelope(401, "Invalid token")),
    httpx.ConnectError("refused"),
], ids=["503", "401", "unreachable"])
def test_the_key_is_in_no_exception_of_the_chain_nor_its_traceback(failure):
    c = client(Script(failure))
    with pytest.raises(HaloError) as raised:
        c.find_sites(PmsType.D4W, "1")
    text = "".join(traceback.format_exception(raised.value))
    assert KEY not in text and KEY not in repr(raised.value) and KEY not in repr(raised.value.__cause__)
    assert KEY not in repr(c)

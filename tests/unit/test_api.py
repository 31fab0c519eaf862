"""The HTTP API in-process: starlette's TestClient against the embedded SQLite and fakeredis.

No server is started here: the hook's reporter is an autospec'd ``Reporter`` (its Lua needs a real
Valkey: see tests/integration/test_api.py), the coordination client a fakeredis.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import fakeredis
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from models import GuidHistory, PmsType, Practice
from reconciler.adapters.store import SqlStore
from reconciler.core.errors import CoordinationUnavailable
from reconciler.adapters.coordination.reporter import Reporter
from tests.utils.fakes import patch_get_redis
from worker import hooks
from worker.config import get_settings, load_settings
from worker.serve import create_app
from worker.serve import auth as auth_module
from worker.serve.body import MAX_BODY_BYTES
from worker.serve.openapi import openapi_document

TOKEN = "tok-7f3a9c1e5b2d4a68"
OTHER = "tok-0c1d2e3f4a5b6c7d"
GUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
OLD = "11111111-1111-4111-8111-111111111111"
NEW = "22222222-2222-4222-8222-222222222222"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def fake_redis(monkeypatch):
    server = fakeredis.FakeRedis()
    patch_get_redis(monkeypatch, lambda **_: server)
    return server


@pytest.fixture
def reporter(fake_redis):
    """The hook's reporter, autospec'd: the hook's own path (parse, cut, context) runs for real."""
    fake = mock.create_autospec(Reporter, instance=True)
    fake.report.return_value = "publish"
    hooks._reporter.put(fake)
    yield fake
    hooks.reset()


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_API_TOKENS", f"{OTHER}, {TOKEN}")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def client(settings, reporter):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def practices(embedded_db):
    """Practice A has always had GUID; practice B moved from OLD to NEW."""
    now = datetime.now(UTC)
    with embedded_db.unit_of_work() as session:
        a = SqlStore(session).add_practice(pms_type=PmsType.ZEDMED, pms_id="Z1", halo_guid=GUID,
                               identifiers={"practice_name": "Zed Clinic"}, now=now - timedelta(days=2))
        b = SqlStore(session).add_practice(pms_type=PmsType.D4W, pms_id="D1", halo_guid=OLD,
                               identifiers={"practice_name": "Dental"}, now=now - timedelta(days=2))
        [first] = SqlStore(session).guid_history(b.id)
        first.valid_until = now - timedelta(days=1)
        session.add(GuidHistory(practice_id=b.id, guid=NEW, valid_from=now - timedelta(days=1),
                                reason="infrastructure_change"))
        session.get(Practice, b.id).halo_guid = NEW
        session.commit()
        ids = (a.id, b.id)
    return ids


def report(client, body=None, **kwargs):
    headers = {**AUTH, **kwargs.pop("headers", {})}
    if body is not None:
        kwargs["json"] = body
    return client.post("/v1/reports", headers=headers, **kwargs)


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": "Bearer "},
], ids=["missing", "wrong", "longer", "basic", "no-scheme", "empty"])
def test_without_a_valid_token_v1_answers_401_and_nothing_else(client, reporter, headers):
    for method, path in [("POST", "/v1/reports"), ("GET", f"/v1/guids/{GUID}"), ("GET", "/v1/openapi.json"),
                         ("GET", "/v1/anything")]:
        response = client.request(method, path, headers=headers, json={"guid": GUID})
        assert response.status_code == 401, (method, path)
        assert response.json() == {"error": "a valid bearer token is required"}
        assert response.headers["www-authenticate"].startswith("Bearer")
    reporter.report.assert_not_called()


def test_any_configured_token_is_accepted(client, reporter):
    for token in (TOKEN, OTHER):
        assert report(client, {"guid": GUID}, headers={"Authorization": f"bearer {token}"}).status_code == 202
    assert reporter.report.call_count == 2


def test_with_no_tokens_configured_v1_refuses_everything(reporter):
    app = create_app(load_settings())
    with TestClient(app) as client:
        assert report(client, {"guid": GUID}).status_code == 401
        assert client.get("/v1/openapi.json", headers={"Authorization": "Bearer "}).status_code == 401
        assert client.get("/healthz").status_code == 200
    reporter.report.assert_not_called()


def test_tokens_are_compared_in_constant_time_against_every_token(client, monkeypatch):
    spy = mock.Mock(wraps=auth_module.hmac.compare_digest)
    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    assert client.get("/v1/openapi.json", headers={"Authorization": f"Bearer {OTHER}"}).status_code == 200
    assert spy.call_count == 2  # the first token matched; the second was compared all the same
    spy.reset_mock()
    assert client.get("/v1/openapi.json", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert spy.call_count == 2
    # digests of equal length: the comparison says nothing about a token's length either
    assert {len(a) for call in spy.call_args_list for a in call.args} == {32}


def test_tokens_never_show_in_settings_or_the_middleware():
    settings = load_settings(api_tokens=f"{TOKEN},{OTHER}")
    assert len(settings.api_tokens) == 2
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    assert TOKEN not in repr(auth_module.BearerAuth(None, settings.api_tokens))


# --- POST /v1/reports ----------------------------------------------------------------------------


def test_a_report_takes_the_hooks_path(client, reporter):
    response = report(client, {"guid": "{" + GUID.upper() + "}", "message": "Forbidden"})
    assert (response.status_code, response.json()) == (202, {"taken": True})
    reporter.report.assert_called_once_with(GUID, "Forbidden")


def test_a_report_without_a_message_and_with_a_null_one(client, reporter):
    assert report(client, {"guid": GUID}).status_code == 202
    assert report(client, {"guid": GUID, "message": None, "extra": 1}).status_code == 202
    assert reporter.report.call_args_list == [mock.call(GUID, None)] * 2


def test_a_long_message_is_cut_to_4_kib_as_the_hook_does(client, reporter):
    assert report(client, {"guid": GUID, "message": "é" * 20_000}).status_code == 202
    message = reporter.report.call_args.args[1]
    assert len(message.encode()) <= 4096 and set(message) == {"é"}


def test_a_store_that_is_down_answers_503_not_taken(client, reporter):
    reporter.report.side_effect = CoordinationUnavailable("the coordination store did not answer (TimeoutError)")
    response = report(client, {"guid": GUID})
    assert response.status_code == 503
    assert response.json()["taken"] is False and "retry" in response.json()["error"]


def test_an_unexpected_failure_in_the_hook_is_still_an_answer(client, reporter):
    reporter.report.side_effect = RuntimeError("boom")
    assert report(client, {"guid": GUID}).status_code == 503  # the hook never raises: False, not taken


@pytest.mark.parametrize("content, fragment", [
    (b"", "not JSON"),
    (b"guid=" + GUID.encode(), "not JSON"),
    (b"\xff\xfe\x00garbage", "not JSON"),
    (b"[" * 30_000 + b"]" * 30_000, "not JSON"),
    (b'["%s"]' % GUID.encode(), "JSON object"),
    (b'"%s"' % GUID.encode(), "JSON object"),
    (b"{}", '"guid"'),
    (b'{"guid": 42}', '"guid"'),
    (b'{"guid": null}', '"guid"'),
    (b'{"guid": ["%s"]}' % GUID.encode(), '"guid"'),
    (b'{"guid": "%s", "message": 7}' % GUID.encode(), '"message"'),
    (b'{"guid": "%s", "message": {"a": 1}}' % GUID.encode(), '"message"'),
    (b'{"guid": "not-a-guid"}', "not a GUID"),
    (b'{"guid": "3f2504e0-4f89-41d3-9a0c"}', "not a GUID"),
], ids=["empty", "form", "not-utf8", "deep", "array", "string", "no-guid", "guid-number", "guid-null",
        "guid-list", "message-number", "message-object", "malformed", "short"])
def test_bad_reports_are_400_with_an_error(client, reporter, content, fragment):
    response = client.post("/v1/reports", headers={**AUTH, "Content-Type": "application/json"}, content=content)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    reporter.report.assert_not_called()


def test_a_malformed_guid_is_counted_as_rejected_like_the_hook_does(client, reporter):
    assert report(client, {"guid": "not-a-guid"}).status_code == 400
    assert hooks.report_forbidden("not-a-guid") is False
    assert reporter.count_rejected.call_count == 2  # once through the API, once through the hook
    reporter.report.assert_not_called()


def test_a_bad_content_length_is_400(client, reporter):
    response = client.post("/v1/reports", headers={**AUTH, "Content-Length": "ten"}, content=b"{}")
    assert response.status_code == 400


def test_a_body_over_64_kib_is_413(client, reporter):
    big = {"guid": GUID, "message": "x" * MAX_BODY_BYTES}
    response = report(client, big)
    assert response.status_code == 413 and "65536" in response.json()["error"]
    reporter.report.assert_not_called()


def test_exactly_64_kib_is_accepted(client, reporter):
    prefix = b'{"guid": "%s", "message": "' % GUID.encode()
    body = prefix + b"x" * (MAX_BODY_BYTES - len(prefix) - 2) + b'"}'
    assert len(body) == MAX_BODY_BYTES
    assert client.post("/v1/reports", headers=AUTH, content=body).status_code == 202


def test_a_lying_content_length_does_not_let_a_big_body_through(client, reporter):
    body = b'{"guid": "%s", "message": "%s"}' % (GUID.encode(), b"x" * (2 * MAX_BODY_BYTES))
    response = client.post("/v1/reports", headers={**AUTH, "Content-Length": "60"}, content=body)
    assert response.status_code == 413
    reporter.report.assert_not_called()


def test_a_chunked_body_without_a_length_is_cut_off_too(client, reporter):
    def chunks():
        yield b'{"guid": "%s", "message": "' % GUID.encode()
        for _ in range(200):
            yield b"x" * 1024
        yield b'"}'

    response = client.post("/v1/reports", headers=AUTH, content=chunks())
    assert response.status_code == 413
    reporter.report.assert_not_called()


def _call_asgi(app, scope: dict, chunks: list[bytes]) -> tuple[int, int]:
    """Drive the app directly; return (status, how many body chunks it pulled)."""
    pulled = 0
    status = 0

    async def receive():
        nonlocal pulled
        if pulled < len(chunks):
            pulled += 1
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    asyncio.run(app(scope, receive, send))
    return status, pulled


def _scope(headers: list[tuple[bytes, bytes]]) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/reports", "raw_path": b"/v1/reports", "root_path": "", "query_string": b"",
            "headers": [(b"authorization", f"Bearer {TOKEN}".encode()), *headers],
            "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 8000)}


def test_a_large_body_is_refused_without_reading_it_all(settings, reporter):
    app = create_app(settings)
    chunks = [b"x" * 1024] * 1000  # a megabyte, in 1 KiB chunks
    status, pulled = _call_asgi(app, _scope([]), chunks)  # no Content-Length (chunked)
    assert status == 413 and pulled <= MAX_BODY_BYTES // 1024 + 1
    status, pulled = _call_asgi(app, _scope([(b"content-length", b"100")]), chunks)  # a lie
    assert status == 413 and pulled <= MAX_BODY_BYTES // 1024 + 1
    status, pulled = _call_asgi(app, _scope([(b"content-length", str(1 << 20).encode())]), chunks)  # the truth
    assert status == 413 and pulled == 0
    status, pulled = _call_asgi(app, {**_scope([]), "headers": []}, chunks)  # no token: not a byte read
    assert status == 401 and pulled == 0


def test_a_report_that_takes_too_long_is_503(settings, reporter):
    reporter.report.side_effect = lambda *args: time.sleep(3) or "publish"
    with TestClient(create_app(settings, request_timeout=0.3)) as client:
        started = time.monotonic()
        response = report(client, {"guid": GUID})
        assert response.status_code == 503 and "retry" in response.json()["error"]
        assert time.monotonic() - started < 2.0


# --- GET /v1/guids/{guid} ------------------------------------------------------------------------


def test_a_current_guid_answers_itself(client, practices):
    a, _ = practices
    response = client.get(f"/v1/guids/{GUID.upper()}", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"guid": GUID, "current_guid": GUID, "practice_id": a, "state": "active"}


def test_a_guid_a_practice_left_answers_the_one_to_use_now(client, practices):
    _, b = practices
    response = client.get(f"/v1/guids/{OLD}", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"guid": OLD, "current_guid": NEW, "practice_id": b, "state": "active"}
    assert client.get(f"/v1/guids/{NEW}", headers=AUTH).json()["current_guid"] == NEW


def test_an_unknown_guid_is_404_and_a_malformed_one_400(client, practices):
    response = client.get("/v1/guids/99999999-9999-4999-8999-999999999999", headers=AUTH)
    assert response.status_code == 404 and "no practice" in response.json()["error"]
    response = client.get("/v1/guids/not-a-guid", headers=AUTH)
    assert response.status_code == 400 and "not a GUID" in response.json()["error"]


def test_an_unexpected_failure_is_a_json_500_not_a_traceback(client, monkeypatch):
    from worker import admin

    monkeypatch.setattr(admin, "practice", mock.Mock(side_effect=RuntimeError("boom")))
    with capture_logs() as logs:
        response = client.get(f"/v1/guids/{GUID}", headers=AUTH)  # TestClient would raise if it escaped
    assert response.status_code == 500 and response.json() == {"error": "internal error; see the server log"}
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["api_request_failed"]


def test_a_database_that_is_down_is_503(client, monkeypatch):
    from worker import admin, db

    monkeypatch.setattr(admin, "practice", mock.Mock(side_effect=db.DatabaseUnavailable("cannot reach")))
    assert client.get(f"/v1/guids/{GUID}", headers=AUTH).status_code == 503


# --- probes, the rest of the app -------------------------------------------------------------------


def test_healthz_needs_no_token(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_when_database_and_broker_answer(client, fake_redis):
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"ready": True, "checks": {"database": True, "broker": True}})


def test_readyz_is_503_when_the_broker_does_not_answer(client, monkeypatch):
    def down(**_):
        raise CoordinationUnavailable("the coordination store did not answer (ConnectionError)")

    patch_get_redis(monkeypatch, down)
    with capture_logs() as logs:
        response = client.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"ready": False, "checks": {"database": True, "broker": False}})
    assert any(e["event"] == "api_not_ready" and "broker" in e for e in logs)


def test_readyz_is_503_when_the_database_does_not_answer(client, fake_redis, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"] == {"database": False, "broker": True}


def test_the_root_is_left_for_the_console(settings, reporter):
    with TestClient(create_app(settings)) as client:
        assert client.get("/").status_code == 404
    console = Starlette(routes=[Route("/", lambda request: PlainTextResponse("console"))])
    with TestClient(create_app(settings, console=console)) as client:
        assert client.get("/").text == "console"
        assert client.get("/healthz").status_code == 200
        assert report(client, {"guid": GUID}).status_code == 202


def test_every_request_is_one_log_line_with_the_route_template_and_no_token(client, practices):
    with capture_logs() as logs:
        client.get(f"/v1/guids/{OLD}", headers=AUTH)
        report(client, {"guid": GUID})
        client.get("/v1/openapi.json", headers={"Authorization": "Bearer wrong"})
        client.get("/nowhere")
    handled = [e for e in logs if e["event"] == "api_request_handled"]
    assert [(e["method"], e["path"], e["status"]) for e in handled] == [
        ("GET", "/v1/guids/{guid}", 200),
        ("POST", "/v1/reports", 202),
        ("GET", "/v1/openapi.json", 401),
        ("GET", "unmatched", 404),
    ]
    assert all(isinstance(e["duration_ms"], float) for e in handled)
    assert TOKEN not in repr(logs) and OLD not in repr(handled)


# --- the OpenAPI document ------------------------------------------------------------------------


def test_the_openapi_document_is_valid_and_served(client):
    document = openapi_document()
    validate(document)  # raises when it is not a valid OpenAPI 3 document
    response = client.get("/v1/openapi.json", headers=AUTH)
    assert response.status_code == 200 and response.json() == document
    assert set(document["paths"]) == {"/v1/reports", "/v1/guids/{guid}", "/v1/openapi.json", "/healthz", "/readyz"}


def _conforms(method: str, path: str, pattern: str, response, *, body: bytes | None = None, headers=None) -> None:
    spec = OpenAPI.from_dict(openapi_document())
    request = MockRequest("http://testserver", method.lower(), path, path_pattern=pattern,
                          headers=headers or {}, data=body, content_type="application/json")
    spec.validate_response(request, MockResponse(response.content, status_code=response.status_code,
                                                 headers=dict(response.headers),
                                                 content_type=response.headers["content-type"]))


def test_the_answers_conform_to_the_document(client, practices, reporter):
    body = b'{"guid": "%s", "message": "Forbidden"}' % GUID.encode()
    spec = OpenAPI.from_dict(openapi_document())
    spec.validate_request(MockRequest("http://testserver", "post", "/v1/reports", headers=AUTH, data=body,
                                      content_type="application/json"))
    _conforms("POST", "/v1/reports", "/v1/reports", report(client, content=body), body=body)
    _conforms("POST", "/v1/reports", "/v1/reports", report(client, {"guid": "x"}), body=b'{"guid": "x"}')
    _conforms("POST", "/v1/reports", "/v1/reports", report(client, {"guid": GUID}, headers={"Authorization": ""}))
    reporter.report.side_effect = CoordinationUnavailable("down")
    _conforms("POST", "/v1/reports", "/v1/reports", report(client, {"guid": GUID}))
    for guid in (OLD, "99999999-9999-4999-8999-999999999999", "nope"):
        _conforms("GET", f"/v1/guids/{guid}", "/v1/guids/{guid}", client.get(f"/v1/guids/{guid}", headers=AUTH))
    _conforms("GET", "/healthz", "/healthz", client.get("/healthz"))


# --- the command ---------------------------------------------------------------------------------


def test_serve_runs_the_app_with_the_settings_host_and_port(monkeypatch, settings):
    from worker import serve as serve_package
    from worker.cli import main

    calls = []
    monkeypatch.setattr(serve_package, "run_server", lambda s, **kw: calls.append((s, kw)))
    assert main(["serve"]) == 0
    assert main(["serve", "--host", "0.0.0.0", "--port", "9001"]) == 0
    assert [kw for _, kw in calls] == [{"host": "127.0.0.1", "port": 8000}, {"host": "0.0.0.0", "port": 9001}]
    assert len(calls[0][0].api_tokens) == 2
    assert main(["serve", "--port", "70000"]) == 2

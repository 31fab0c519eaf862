"""The operator console over HTTP (the real Starlette app in-process, a simulator on loopback, the
embedded SQLite and Valkey): who may see and do what, and that decisions land in the audit."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
import warnings

import pytest

with warnings.catch_warnings():  # Starlette's TestClient over httpx 0.28 prefers httpx2; it works as documented
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from models import PmsType, Verdict
from tests.utils.pairing import recording_simulator
from worker import admin, wiring
from worker.config import get_settings
from worker.serve.app import create_app
from worker.serve.console import build_console
from worker.simulator import Fault

pytestmark = pytest.mark.integration  # a simulator on loopback and the embedded Valkey

KEY = "console-test-key-0d41"
PASSWORD = "correct horse battery"


@pytest.fixture
def sim(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_API_TOKENS", "app-token-7f3e9a")
    with recording_simulator(monkeypatch, KEY) as simulator:
        yield simulator


def client() -> TestClient:
    settings = get_settings()
    return TestClient(create_app(settings, console=build_console(settings)), base_url="http://127.0.0.1")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(c: TestClient, name: str, password: str = PASSWORD):
    token = csrf_of(c.get("/signin").text)
    return c.post("/signin", data={"csrf": token, "name": name, "password": password, "next": "/"},
                  follow_redirects=False)


@pytest.fixture
def held(sim):
    """A practice held for a business change (new GUID, new name), and two operators."""
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Halo Clinic")
    practice = admin.onboard("BestPractice", "BP1")
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    sim.rename(new, "Harbour Dental")
    assert str(admin.reconcile_now(practice.id).action) == "held"
    admin.add_operator("alice", "approver", PASSWORD)
    admin.add_operator("victor", "viewer", PASSWORD)
    return practice.id, practice.halo_guid, new


def test_signed_out_every_path_is_the_sign_in_page_and_nothing_else(held):
    pid, old, new = held
    c = client()
    for path in ["/", f"/practices/{pid}", f"/practices/{pid}/change", "/tickets", "/tickets/1", "/audit",
                 "/practices?q=Harbour", "/no/such/page"]:
        r = c.get(path)
        assert r.status_code == 401, path
        assert 'id="signin"' in r.text and "Harbour" not in r.text and old not in r.text and new not in r.text
        assert r.headers["cache-control"] == "no-store"
    r = c.post(f"/practices/{pid}/approve", data={"csrf": "x"})
    assert r.status_code == 401 and 'id="signin"' in r.text
    assert admin.practice(pid).state == "held"


def test_security_headers_and_cookie_flags(held):
    c = client()
    r = c.get("/signin")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    # One script, from the console's own static files (it shows times in the browser's zone); none inline.
    assert re.findall(r"<script[^>]*>", r.text) == ['<script src="/static/console.js" defer>']
    cookie = sign_in(c, "alice").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=28800" in cookie


def test_secure_cookies_unless_plain_http_to_loopback(held, monkeypatch):
    assert "secure" in TestClient(client().app, base_url="https://console.example").get(
        "/signin").headers["set-cookie"].lower()
    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_SECURE_COOKIES", "true")
    get_settings.cache_clear()
    assert "secure" in client().get("/signin").headers["set-cookie"].lower()


def test_an_approver_approves_through_the_use_case_and_the_audit_names_them(held, sim):
    pid, old, new = held
    c = client()
    assert sign_in(c, "alice").status_code == 303
    home = c.get("/")
    assert home.status_code == 200 and "Halo Clinic" in home.text and f"/practices/{pid}/change" in home.text
    page = c.get(f"/practices/{pid}/change")
    assert old in page.text and new in page.text and "differs" in page.text and 'id="approve"' in page.text
    finds = sim.call_count("find_sites", "BP1")

    r = c.post(f"/practices/{pid}/approve", data={"csrf": csrf_of(page.text), "note": "rang the practice"},
               follow_redirects=False)

    assert r.status_code == 303 and r.headers["location"] == f"/practices/{pid}?done=approved"
    assert sim.call_count("find_sites", "BP1") == finds + 1  # approve asked Halo again
    assert admin.practice(pid).halo_guid == new
    [entry] = [e for e in admin.audit(pid) if e.action == "approved"]
    assert (entry.actor, entry.note) == ("alice", "rang the practice")
    shown = c.get(r.headers["location"]).text
    assert "alice" in shown and "rang the practice" in shown


def test_a_viewer_sees_the_change_but_cannot_approve_even_with_a_forged_post(held):
    pid, old, new = held
    c = client()
    sign_in(c, "victor")
    page = c.get(f"/practices/{pid}/change")
    assert page.status_code == 200 and new in page.text
    assert 'id="approve"' not in page.text and 'id="viewer-note"' in page.text
    for path in (f"/practices/{pid}/approve", f"/practices/{pid}/reject", "/tickets/1/ack", "/tickets/1/resolve"):
        r = c.post(path, data={"csrf": csrf_of(page.text), "note": "forged"})
        assert r.status_code == 403, path
    assert admin.practice(pid).state == "held"
    assert [e.actor for e in admin.audit(pid)] == ["worker"]


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(held):
    pid, _, _ = held
    c = client()
    sign_in(c, "alice")
    assert c.post(f"/practices/{pid}/approve", data={"note": "no token"}).status_code == 403
    assert c.post(f"/practices/{pid}/reject", data={"csrf": "guessed", "note": "x"}).status_code == 403
    other = client()
    sign_in(other, "alice")  # a token from another session is not this session's
    assert c.post(f"/practices/{pid}/reject", data={"csrf": csrf_of(other.get("/").text)}).status_code == 403
    assert admin.practice(pid).state == "held"


def test_sign_in_is_throttled_per_name(held):
    c = client()
    for _ in range(5):
        assert sign_in(c, "alice", "wrong password!").status_code == 401
    r = sign_in(c, "alice")  # the right password, too late
    assert r.status_code == 429 and "Too many failed sign-ins" in r.text
    assert "halo_console=" not in r.headers.get("set-cookie", "")


def test_a_tampered_or_foreign_session_cookie_is_no_session(held):
    c = client()
    sign_in(c, "alice")
    cookie = c.cookies["halo_console"]
    c.cookies.set("halo_console", cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
    assert c.get("/").status_code == 401
    admin.remove_operator("victor")
    v = client()
    sign_in(v, "victor")
    assert v.get("/").status_code == 401


def test_removing_an_operator_ends_their_session(held):
    c = client()
    sign_in(c, "victor")
    assert c.get("/").status_code == 200
    admin.remove_operator("victor")
    assert c.get("/").status_code == 401


def test_tickets_ack_and_resolve_from_the_console(held):
    pid, _, _ = held
    [ticket] = admin.list_tickets()
    c = client()
    sign_in(c, "alice")
    page = c.get(f"/tickets/{ticket.id}")
    assert page.status_code == 200 and ticket.detail[:30] in page.text
    r = c.post(f"/tickets/{ticket.id}/ack", data={"csrf": csrf_of(page.text), "note": "on it"}, follow_redirects=False)
    assert r.status_code == 303
    assert admin.list_tickets()[0].status == "acknowledged"
    again = c.post(f"/tickets/{ticket.id}/ack", data={"csrf": csrf_of(page.text)})
    assert again.status_code == 409 and "only an open ticket" in again.text
    [entry] = [e for e in admin.audit(pid) if e.action == "acknowledged"]
    assert (entry.actor, entry.note, entry.ticket_id) == ("alice", "on it", ticket.id)


def test_search_finds_by_name_pms_id_and_any_guid_ever_held(held):
    pid, old, new = held
    admin.approve(pid, by="alice")
    c = client()
    sign_in(c, "victor")
    for q in ("harbour", "BP1", old, new.upper()):
        assert f'href="/practices/{pid}"' in c.get("/practices", params={"q": q}).text, q
    assert "No practice matches" in c.get("/practices", params={"q": "nobody-at-all"}).text
    page = c.get(f"/practices/{pid}").text
    assert old in page and new in page and "approved" in page


def test_trusted_proxy_mode_takes_the_name_only_from_trusted_addresses(held, monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_PROXY_HEADER", "X-Forwarded-User")
    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES", "10.0.0.0/8")
    get_settings.cache_clear()
    settings = get_settings()
    app = create_app(settings, console=build_console(settings))
    untrusted = TestClient(app, base_url="http://127.0.0.1", client=("192.0.2.7", 5000))
    assert untrusted.get("/", headers={"X-Forwarded-User": "alice"}).status_code == 401
    proxy = TestClient(app, base_url="http://127.0.0.1", client=("10.1.2.3", 5000))
    assert proxy.get("/", headers={"X-Forwarded-User": "mallory"}).status_code == 401  # not an operator
    page = proxy.get("/", headers={"X-Forwarded-User": "victor"})
    assert page.status_code == 200 and 'id="operator-name">victor<' in page.text


def test_no_secret_in_any_page(held):
    pid, _, _ = held
    c = client()
    sign_in(c, "alice")
    secrets_ = [KEY, "app-token-7f3e9a", (get_settings().data_dir / "console-secret").read_text().strip()]
    for path in ["/", f"/practices/{pid}", f"/practices/{pid}/change", "/tickets", "/tickets/1", "/audit", "/signin"]:
        text = c.get(path).text
        assert not any(s in text for s in secrets_), path


def test_the_api_still_answers_beside_the_console(held):
    c = client()
    assert c.get("/healthz").status_code == 200
    assert c.get("/v1/guids/3f2504e0-4f89-41d3-9a0c-0305e82c3301").status_code == 401


def test_pairing_from_the_console_refuses_a_bad_code_then_pairs_and_names_the_approver(sim):
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP7", practice_name="Pair Clinic")
    pid = admin.onboard("BestPractice", "BP7").id
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP7")
    sim.unpair(new)
    sim.set_pairing_code(new, "GOOD")
    assert str(admin.reconcile_now(pid).action) == "held"
    admin.add_operator("alice", "approver", PASSWORD)
    c = client()
    sign_in(c, "alice")
    page = c.get(f"/practices/{pid}/change")
    assert 'id="pair"' in page.text and 'id="approve"' not in page.text

    bad = c.post(f"/practices/{pid}/pair", data={"csrf": csrf_of(page.text), "pairing_code": "BAD"})
    assert bad.status_code == 409 and 'id="error"' in bad.text
    assert admin.practice(pid).state == "held"

    r = c.post(f"/practices/{pid}/pair", data={"csrf": csrf_of(page.text), "pairing_code": "GOOD",
                                               "note": "code read out on the phone"}, follow_redirects=False)
    assert r.status_code == 303
    assert (admin.practice(pid).halo_guid, admin.practice(pid).state) == (new, "active")
    [entry] = [e for e in admin.audit(pid) if e.action == "paired"]
    assert (entry.actor, entry.note) == ("alice", "code read out on the phone")
    assert "GOOD" not in (entry.detail or "")


def test_pausing_and_resuming_from_the_console(held):
    c = client()
    sign_in(c, "alice")
    token = csrf_of(c.get("/").text)
    assert c.post("/autoswitch", data={"csrf": token, "action": "sideways"}).status_code == 400
    assert c.post("/autoswitch", data={"csrf": token, "action": "pause", "note": "Halo incident"},
                  follow_redirects=False).status_code == 303
    assert admin.autoswitch("status")["paused"] is True
    assert "paused" in c.get("/").text
    c.post("/autoswitch", data={"csrf": token, "action": "resume"})
    assert admin.autoswitch("status")["paused"] is False
    assert [(e.actor, e.action) for e in admin.audit()[:2]] == [("alice", "resumed"), ("alice", "paused")]


def test_the_front_page_names_an_open_breaker_and_its_closing(held):
    c = client()
    sign_in(c, "victor")
    assert "Breaker: closed" in c.get("/").text
    breaker = wiring.breaker()
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=time.time())
    page = c.get("/").text
    assert "Breaker <strong>open</strong>: quota_exceeded (integrator)" in page
    breaker.close()
    assert "Breaker: closed" in c.get("/").text


def test_an_integrator_wide_ticket_shows_its_breaker_next_probe_and_runbook_section(held, sim):
    pid, _, _ = held
    sim.inject(Fault("ip_not_allowed"))
    assert str(admin.reconcile_now(pid).verdict) == "ip_not_allowed"
    [ticket] = [t for t in admin.list_tickets() if t.practice_id is None]
    c = client()
    sign_in(c, "victor")
    page = c.get(f"/tickets/{ticket.id}").text
    state = wiring.breaker().states()[0]
    assert 'id="breaker"' in page and "Breaker <strong>open</strong> (ip_not_allowed, integrator)" in page
    probe = datetime.fromtimestamp(state.next_probe_at, UTC).isoformat()
    assert f'Next probe: <time datetime="{probe}">' in page
    assert 'href="/runbook#halo-403-caller-ip-not-allowed"' in page
    runbook = c.get("/runbook")
    assert runbook.status_code == 200 and 'id="halo-403-caller-ip-not-allowed"' in runbook.text
    assert "<script" not in runbook.text.split("</head>")[1]  # the Markdown's HTML is not passed through

    sim.clear_faults()
    admin.reconcile_now(pid)  # Halo answers: the breaker closes and the ticket resolves
    page = c.get(f"/tickets/{ticket.id}").text
    assert 'id="ticket-status">resolved<' in page and "Breaker: closed" in page

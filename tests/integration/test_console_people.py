"""Sessions and people in the operator console (issue 22, "Sessions and people"; PRODUCT.md
"Operators", "Two people for a business change"), and its outbox page: the real Starlette app, a
simulator and webhook receivers on loopback, the embedded SQLite and Valkey.

Each ``client()`` is a fresh build of the console (its own ``Sessions``): what holds across two of them
holds across ``serve`` processes and restarts, since all they share is the database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from models import PmsType, SigninThrottle, TicketKind, TicketReason
from models.outbox import OutboxEvent
from reconciler.adapters.store import SqlStore
from tests.integration.test_console import PASSWORD, client, csrf_of, sign_in
from tests.utils.pairing import recording_simulator
from tests.utils.receivers import http_receiver
from tests.utils.servers import free_port
from worker import admin, db
from worker.config import get_settings

pytestmark = pytest.mark.integration

KEY = "console-people-key-9e1d"


@pytest.fixture
def sim(monkeypatch):
    with recording_simulator(monkeypatch, KEY) as simulator:
        yield simulator


@pytest.fixture
def people(sim):
    admin.add_operator("ada", "admin", PASSWORD)
    admin.add_operator("alice", "approver", PASSWORD)
    admin.add_operator("bob", "approver", PASSWORD)
    admin.add_operator("victor", "viewer", PASSWORD)


def signed_in(name: str):
    c = client()
    assert sign_in(c, name).status_code == 303
    return c


def test_a_cookie_replayed_after_sign_out_opens_nothing(people):
    c = signed_in("alice")
    cookie = c.cookies["halo_console"]
    home = c.get("/")
    assert home.status_code == 200
    assert c.post("/signout", data={"csrf": csrf_of(home.text)}, follow_redirects=False).status_code == 303

    replay = client()
    replay.cookies.set("halo_console", cookie)
    r = replay.get("/")
    assert r.status_code == 401 and 'id="signin"' in r.text
    assert replay.get("/audit").status_code == 401


def test_an_admin_disabling_an_operator_ends_their_session_at_once(people):
    victim = signed_in("victor")
    assert victim.get("/").status_code == 200
    a = signed_in("ada")
    page = a.get("/operators")
    assert page.status_code == 200 and 'id="operator-victor"' in page.text

    r = a.post("/operators/victor/disable", data={"csrf": csrf_of(page.text)}, follow_redirects=False)

    assert r.status_code == 303
    assert victim.get("/").status_code == 401  # the very next request
    assert sign_in(client(), "victor").status_code == 401  # and the right password no longer signs in
    assert [o.disabled_at is not None for o in admin.list_operators() if o.name == "victor"] == [True]
    a.post("/operators/victor/enable", data={"csrf": csrf_of(page.text)})
    assert sign_in(client(), "victor").status_code == 303


def test_a_password_reset_ends_sessions_and_the_new_password_works(people):
    victim = signed_in("bob")
    a = signed_in("ada")
    token = csrf_of(a.get("/operators").text)
    assert a.post("/operators/bob/reset", data={"csrf": token, "password": "short"}).status_code == 400
    assert victim.get("/").status_code == 200  # a refused reset changes nothing
    assert a.post("/operators/bob/reset", data={"csrf": token, "password": "a brand new password"},
                  follow_redirects=False).status_code == 303
    assert victim.get("/").status_code == 401
    assert sign_in(client(), "bob", "a brand new password").status_code == 303


def test_only_an_admin_manages_operators(people):
    alice = signed_in("alice")
    assert alice.get("/operators").status_code == 403
    token = csrf_of(alice.get("/").text)
    assert alice.post("/operators", data={"csrf": token, "name": "mallory", "role": "admin",
                                          "password": "a long password"}).status_code == 403
    assert alice.post("/operators/victor/disable", data={"csrf": token}).status_code == 403
    assert "mallory" not in [o.name for o in admin.list_operators()]
    assert 'href="/operators"' not in alice.get("/").text

    a = signed_in("ada")
    token = csrf_of(a.get("/operators").text)
    assert a.post("/operators", data={"csrf": token, "name": "nina", "role": "approver",
                                      "password": "a long password"}, follow_redirects=False).status_code == 303
    assert sign_in(client(), "nina", "a long password").status_code == 303
    assert a.post("/operators/ada/disable", data={"csrf": token}).status_code == 400  # never yourself


def test_the_throttle_holds_across_processes_and_lets_the_right_password_in_after_the_cool_down(people):
    for _ in range(5):
        assert sign_in(client(), "alice", "wrong password!").status_code == 401
    restarted = client()  # another process, or the same after a restart: the count is in the database
    r = sign_in(restarted, "alice")
    assert r.status_code == 429 and "halo_console=" not in r.headers.get("set-cookie", "")
    assert sign_in(client(), "bob").status_code == 303  # another operator at the same address is not locked

    with db.new_session() as session:  # as if the cool-down (the window) had passed
        row = session.exec(select(SigninThrottle).where(SigninThrottle.key == "name:alice")).one()
        row.locked_until = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
        session.commit()
    assert sign_in(client(), "alice").status_code == 303


def test_an_admin_unlocks_a_locked_operator_at_once(people):
    for _ in range(5):
        sign_in(client(), "alice", "wrong password!")
    assert sign_in(client(), "alice").status_code == 429
    a = signed_in("ada")
    r = a.post("/operators/alice/unlock", data={"csrf": csrf_of(a.get("/operators").text)}, follow_redirects=False)
    assert r.status_code == 303
    assert sign_in(client(), "alice").status_code == 303


def test_the_address_has_its_own_higher_limit(people, monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_SIGNIN_ADDRESS_ATTEMPTS", "4")
    get_settings.cache_clear()
    for name in ("x1", "x2", "x3", "x4"):  # names nobody has, one failure each: no name is locked
        assert sign_in(client(), name, "wrong password!").status_code == 401
    assert sign_in(client(), "bob").status_code == 429  # the address is


def test_two_people_approve_a_business_change_in_the_console(people, sim, monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_APPROVALS_REQUIRED", "2")
    get_settings.cache_clear()
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Halo Clinic")
    practice = admin.onboard("BestPractice", "BP1")
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    sim.rename(new, "Harbour Dental")
    assert str(admin.reconcile_now(practice.id).action) == "held"
    pid = practice.id

    alice = signed_in("alice")
    page = alice.get(f"/practices/{pid}/change")
    assert "Needs 2 approvals" in page.text and "No approval yet" in page.text
    token = csrf_of(page.text)
    r = alice.post(f"/practices/{pid}/approve", data={"csrf": token, "note": "  "})
    assert r.status_code == 400 and "note" in r.text  # the note is required
    assert alice.post(f"/practices/{pid}/reject", data={"csrf": token}).status_code == 400
    r = alice.post(f"/practices/{pid}/approve", data={"csrf": token, "note": "rang the practice"},
                   follow_redirects=False)
    assert r.status_code == 303 and "approval_recorded" in r.headers["location"]
    shown = alice.get(r.headers["location"]).text
    assert "Approved so far by <strong>alice</strong> (1 of 2)" in shown and 'id="already-approved"' in shown
    assert admin.practice(pid).state == "held"
    again = alice.post(f"/practices/{pid}/approve", data={"csrf": token, "note": "me again"})
    assert again.status_code == 409 and "already approved" in again.text

    bob = signed_in("bob")
    r = bob.post(f"/practices/{pid}/approve", data={"csrf": csrf_of(bob.get("/").text), "note": "second pair of eyes"},
                 follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/practices/{pid}?done=approved"
    assert admin.practice(pid).halo_guid == new
    assert [(e.actor, e.action) for e in admin.audit(pid) if e.actor != "worker"] == [
        ("bob", "approved"), ("alice", "approved")]


def test_the_outbox_page_banner_and_an_admins_retry(people, monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/hooks")
    monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_SECRET", "console-outbox-secret-77")
    monkeypatch.setenv("HALO_RECONCILER_OUTBOX_MAX_ATTEMPTS", "1")
    get_settings.cache_clear()
    with db.new_session() as session:  # opened 20 minutes ago; its event has waited as long
        SqlStore(session).open_ticket(kind=TicketKind.CONTACT_HALO_SUPPORT, reason=TicketReason.IP_NOT_ALLOWED,
                                      practice_id=None, detail="Halo says the caller IP is not allowed.",
                                      now=datetime.now(UTC) - timedelta(minutes=20))
        session.commit()
    admin.deliver_tickets()
    [event] = [e for e in admin.outbox_events("failed")]

    alice = signed_in("alice")
    home = alice.get("/")
    assert 'id="outbox-banner"' in home.text and "webhook" in home.text and "ConnectError" in home.text
    outbox = alice.get("/outbox")
    assert f'id="event-{event.id}"' in outbox.text and "Send again" not in outbox.text  # admins retry
    assert alice.post(f"/outbox/{event.id}/retry", data={"csrf": csrf_of(outbox.text)}).status_code == 403

    a = signed_in("ada")
    page = a.get("/outbox")
    assert "Send again" in page.text
    refused = a.post(f"/outbox/{event.id}/retry", data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 409 and "refused again" in refused.text
    with http_receiver() as receiver:
        monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_URL", f"{receiver.url}/hooks")
        get_settings.cache_clear()
        r = a.post(f"/outbox/{event.id}/retry", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
        assert r.status_code == 303
        assert [req.json()["event"] for req in receiver.on("/hooks")] == ["ticket.opened"]
    assert 'id="outbox-banner"' not in a.get("/").text
    waiting = a.get("/outbox").text
    assert f'id="event-{event.id}"' not in waiting  # the default view: what still waits
    assert 'id="unsent-notify"' not in waiting  # no notification URL: no notify row was written
    with db.new_session() as session:  # one an older version wrote for nobody
        session.add(OutboxEvent(event_id="notify-ticket-99-opened-1", event_type="ticket.opened", target="notify",
                                payload={}, created_at=datetime.now(UTC), next_attempt_at=datetime.now(UTC)))
        session.commit()
    waiting = a.get("/outbox").text
    assert 'id="unsent-notify"' in waiting and "HALO_RECONCILER_NOTIFY_URLS" in waiting and "retention" in waiting
    assert f'id="event-{event.id}"' in a.get("/outbox", params={"status": "delivered"}).text


def test_the_outbox_page_is_paged_by_keyset(people, monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/hooks")
    monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_SECRET", "console-outbox-secret-77")
    get_settings.cache_clear()
    with db.new_session() as session:
        for _ in range(30):  # opened and resolved: 60 webhook rows, none sent (no notification URL: no notify row)
            ticket = SqlStore(session).open_ticket(kind=TicketKind.CONTACT_HALO_SUPPORT,
                                                   reason=TicketReason.IP_NOT_ALLOWED, practice_id=None,
                                                   detail="Halo says the caller IP is not allowed.", now=datetime.now(UTC))
            SqlStore(session).resolve_ticket(ticket.id, now=datetime.now(UTC))
        session.commit()
    c = signed_in("victor")
    seen, path = [], "/outbox?status=all"
    while path:
        page = c.get(path).text
        ids = [int(i) for i in re.findall(r'id="event-(\d+)"', page)]
        assert 0 < len(ids) <= 50
        seen += ids
        older = re.search(r'href="(/outbox\?[^"]+)" id="older"', page)
        path = older.group(1).replace("&amp;", "&") if older else None
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))  # newest first, none twice
    assert len(seen) == len(admin.outbox_events(limit=1000)) == 60  # opened and resolved


def test_an_admins_changes_to_operators_are_audited_under_their_name(people):
    for _ in range(5):
        sign_in(client(), "alice", "wrong password!")
    a = signed_in("ada")
    token = csrf_of(a.get("/operators").text)
    before = admin.audit()
    assert a.post("/operators/ada/disable", data={"csrf": token}).status_code == 400  # refused: no decision
    assert a.post("/operators/bob/reset", data={"csrf": token, "password": "short"}).status_code == 400
    assert a.post("/operators/ada/role", data={"csrf": token, "role": "viewer"}).status_code == 400  # never yourself
    assert admin.audit() == before

    for path, data in [("/operators", {"name": "nina", "role": "viewer", "password": "a long password",
                                       "note": "new on the night shift"}),
                       ("/operators/victor/disable", {}), ("/operators/victor/enable", {}),
                       ("/operators/bob/reset", {"password": "a brand new password"}),
                       ("/operators/alice/unlock", {}),
                       ("/operators/victor/role", {"role": "approver", "note": "covers nights now"})]:
        assert a.post(path, data={"csrf": token, **data}, follow_redirects=False).status_code == 303, path

    done = [(e.actor, e.action, e.note, e.detail) for e in admin.audit(actor="ada")]
    assert done == [
        ("ada", "role_changed", "covers nights now", "operator victor: role viewer -> approver"),
        ("ada", "unlocked", None, "operator alice: sign-in lock lifted"),
        ("ada", "password_reset", None, "operator bob: sessions ended"),
        ("ada", "enabled", None, "operator victor"),
        ("ada", "disabled", None, "operator victor: signing in refused, sessions ended"),
        ("ada", "added", "new on the night shift", "operator nina: role viewer"),
    ]
    page = a.get("/audit", params={"actor": "ada"})
    assert page.status_code == 200
    assert "operator victor: signing in refused, sessions ended" in page.text and "new on the night shift" in page.text
    assert "password_reset" in a.get("/audit").text  # the action filter offers the new actions
    victor = signed_in("victor")  # now an approver: the role counts from the next request
    assert victor.get("/").status_code == 200 and [o.role for o in admin.list_operators() if o.name == "victor"] == ["approver"]


def test_the_audit_keeps_operator_changes_only_across_its_pages(people):
    """``/audit?about=operators``: changes to people only (not the decisions about practices beside
    them), a page of 50 at a time, every filter carried to the next page."""
    from models import OperatorDecision
    from reconciler.core.vocabulary import OPERATOR_CHANGES

    start = datetime.now(UTC) - timedelta(hours=2)
    with db.new_session() as session:
        for n in range(60):  # more than a page of changes, each beside a decision about something else
            at = start + timedelta(minutes=n)
            session.add(OperatorDecision(at=at, actor="ada", action="unlocked" if n % 2 else "password_reset",
                                         detail=f"operator op{n}"))
            session.add(OperatorDecision(at=at, actor="ada", action="paused", detail="autoswitch paused"))
        session.commit()
    expected = admin.audit(operator_changes=True)
    assert len(expected) == 60 + 4  # and the people fixture's four operators, added
    c = signed_in("victor")  # a viewer reads the whole audit trail
    first = c.get("/audit", params={"about": "operators"}).text
    assert 'name="about" value="operators" checked' in first
    shown, path = [], "/audit?about=operators"
    while path:
        page = c.get(path).text
        shown += re.findall(r'<td data-label="Action" class="action">([^<]+)</td>', page)
        found = re.search(r'<a href="([^"]+)" id="next-page"', page)
        path = found.group(1).replace("&amp;", "&") if found else None
        assert path is None or "about=operators" in path
    assert len(shown) == len(expected) and set(shown) <= set(OPERATOR_CHANGES)
    everything = c.get("/audit", params={"actor": "ada"}).text
    assert ">paused</td>" in everything  # without the filter, the rest is there
    added = c.get("/audit", params={"about": "operators", "action": "added"}).text
    assert re.findall(r'class="action">([^<]+)</td>', added) == ["added"] * 4

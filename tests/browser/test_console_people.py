"""Sessions, people, two approvals and the outbox in a real browser (issue 22): Chromium against the
real ``serve`` process, the simulator and a webhook receiver on loopback."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from models import PmsType, TicketKind, TicketReason
from reconciler.adapters.store import SqlStore
from tests.browser.conftest import PASSWORD
from tests.utils.receivers import http_receiver
from worker import admin, db
from worker.config import get_settings

pytestmark = pytest.mark.integration  # a browser, serve and the simulator as real processes


def sign_in(page, url: str, name: str) -> None:
    page.goto(f"{url}/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#operator-name")
    assert page.inner_text("#operator-name") == name


@pytest.fixture
def people(sim):
    admin.add_operator("ada", "admin", PASSWORD)
    admin.add_operator("alice", "approver", PASSWORD)
    admin.add_operator("bob", "approver", PASSWORD)
    admin.add_operator("victor", "viewer", PASSWORD)


@pytest.fixture
def two_approvals(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_APPROVALS_REQUIRED", "2")
    get_settings.cache_clear()


@pytest.fixture
def webhook(monkeypatch):
    """A webhook receiver that refuses (503) until told otherwise; one attempt before `failed`."""
    with http_receiver() as receiver:
        receiver.fail_next = 1_000
        monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_URL", f"{receiver.url}/hooks/halo")
        monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_SECRET", "browser-webhook-secret-5a")
        monkeypatch.setenv("HALO_RECONCILER_OUTBOX_MAX_ATTEMPTS", "1")
        get_settings.cache_clear()
        yield receiver


def test_a_cookie_replayed_after_sign_out_is_refused(browser, people, console):
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, console, "alice")
        [cookie] = [c for c in context.cookies() if c["name"] == "halo_console"]
        page.click("header .who button[type=submit]")  # sign out
        page.wait_for_selector("#signin")
    finally:
        context.close()

    replay = browser.new_context()
    try:
        replay.add_cookies([cookie])
        page = replay.new_page()
        response = page.goto(f"{console}/audit")
        assert response.status == 401 and page.locator("#signin").is_visible()
        assert page.locator("#operator-name").count() == 0
    finally:
        replay.close()


def test_an_admin_disables_an_operator_and_their_open_page_is_signed_out(browser, people, console):
    victim_context, admin_context = browser.new_context(), browser.new_context()
    try:
        victim = victim_context.new_page()
        sign_in(victim, console, "victor")
        ada = admin_context.new_page()
        sign_in(ada, console, "ada")
        ada.click("nav a[href='/operators']")
        ada.click("#operator-victor button:has-text('Disable')")
        ada.wait_for_url(re.compile(r"/operators\?done=operator_disabled$"))
        assert ada.inner_text("#operator-victor .state") == "disabled"

        response = victim.reload()
        assert response.status == 401 and victim.locator("#signin").is_visible()
        victim.fill("input[name=name]", "victor")
        victim.fill("input[name=password]", PASSWORD)
        victim.click("#signin button[type=submit]")
        assert victim.locator("#signin").is_visible() and "Wrong name or password" in victim.content()
    finally:
        victim_context.close()
        admin_context.close()


def test_two_people_approve_a_business_change(browser, sim, people, two_approvals, console):
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Halo Clinic")
    practice = admin.onboard("BestPractice", "BP1")
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    sim.rename(new, "Harbour Dental")
    assert str(admin.reconcile_now(practice.id).action) == "held"
    pid = practice.id

    first, second = browser.new_context(), browser.new_context()
    try:
        alice = first.new_page()
        sign_in(alice, console, "alice")
        alice.goto(f"{console}/practices/{pid}/change")
        assert "No approval yet" in alice.inner_text("#approvals")
        alice.click("#approve button[type=submit]")  # no note: the browser refuses to send it
        assert alice.url.endswith(f"/practices/{pid}/change")
        alice.fill("#approve textarea[name=note]", "rang the practice")
        alice.click("#approve button[type=submit]")
        alice.wait_for_url(re.compile(rf"/practices/{pid}/change\?done=approval_recorded$"))
        assert "Approved so far by alice (1 of 2)" in alice.inner_text("#approvals")
        assert alice.locator("#already-approved").is_visible() and alice.inner_text("#state") == "held"

        bob = second.new_page()
        sign_in(bob, console, "bob")
        bob.goto(f"{console}/practices/{pid}/change")
        assert "alice" in bob.inner_text("#approvals")
        bob.fill("#approve textarea[name=note]", "second pair of eyes")
        bob.click("#approve button[type=submit]")
        bob.wait_for_url(re.compile(rf"/practices/{pid}\?done=approved$"))
        assert bob.inner_text("#halo-guid") == new and bob.inner_text("#state") == "active"
    finally:
        first.close()
        second.close()
    assert [(e.actor, e.action) for e in admin.audit(pid) if e.actor != "worker"] == [
        ("bob", "approved"), ("alice", "approved")]


def test_the_outbox_banner_and_an_admins_retry(page, people, webhook, console):
    with db.new_session() as session:
        SqlStore(session).open_ticket(kind=TicketKind.CONTACT_HALO_SUPPORT, reason=TicketReason.IP_NOT_ALLOWED,
                                      practice_id=None, detail="Halo says the caller IP is not allowed.",
                                      now=datetime.now(UTC) - timedelta(minutes=20))
        session.commit()
    admin.deliver_tickets()  # refused once: failed
    [event] = admin.outbox_events("failed")

    sign_in(page, console, "ada")
    banner = page.inner_text("#outbox-banner")
    assert "webhook" in banner and "503" in banner
    page.click("#outbox-banner a[href='/outbox']")
    row = f"#event-{event.id}"
    assert page.inner_text(f"{row} .status-failed") == "failed"

    page.click(f"{row} button:has-text('Send again')")  # still refused
    assert page.locator("#error").is_visible() and "refused again" in page.inner_text("#error")

    webhook.fail_next = 0  # the receiver is fixed
    page.click(f"{row} button:has-text('Send again')")
    page.wait_for_url(re.compile(r"/outbox\?status=all&done=retried$"))
    assert page.inner_text(f"{row} td[data-label=Status]") == "delivered"
    assert page.locator("#outbox-banner").count() == 0
    assert [r.json()["event"] for r in webhook.on("/hooks/halo")] == ["ticket.opened"]

"""The console in a real browser, as a person meets it (PRODUCT.md, "The operator console")."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from models import PmsType
from tests.browser.conftest import PASSWORD
from worker import admin

pytestmark = pytest.mark.integration  # a browser, serve and the simulator as real processes

# HALO_RECONCILER_SCREENSHOTS=docs/console writes the README's screenshots from these runs.
SHOTS = os.environ.get("HALO_RECONCILER_SCREENSHOTS")


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
def held(sim):
    """One practice held for a business change (Halo moved it and shows new owners), two operators."""
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Halo Clinic")
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP2", practice_name="Bayside Family Practice")
    practice = admin.onboard("BestPractice", "BP1")
    admin.onboard("BestPractice", "BP2")
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    sim.rename(new, "Harbour Dental")
    assert str(admin.reconcile_now(practice.id).action) == "held"
    admin.add_operator("alice", "approver", PASSWORD)
    admin.add_operator("victor", "viewer", PASSWORD)
    return practice.id, practice.halo_guid, new


def sign_in(page, url: str, name: str) -> None:
    page.goto(f"{url}/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#operator-name")
    assert page.inner_text("#operator-name") == name


def test_an_approver_finds_a_held_change_reads_it_approves_it_and_sees_their_name(page, console, held, sim):
    pid, old, new = held
    sign_in(page, console, "alice")
    shot(page, "what-needs-me")

    page.click(f"#held a[href='/practices/{pid}/change']")
    side = page.inner_text("#side-by-side")
    assert old in side and new in side and "Halo Clinic" in side and "Harbour Dental" in side
    assert page.locator("#side-by-side tr.diff .mark").count() >= 1  # the name differs, and is marked
    shot(page, "held-change")
    finds = sim.call_count("find_sites", "BP1")

    page.fill("#approve textarea[name=note]", "owner confirmed by phone")
    page.click("#approve button[type=submit]")

    page.wait_for_url(re.compile(rf"/practices/{pid}\?done=approved$"))
    assert sim.call_count("find_sites", "BP1") == finds + 1  # approve asked Halo again
    assert page.inner_text("#halo-guid") == new
    assert page.inner_text("#state") == "active"
    first = page.locator("#audit tbody tr").first
    assert (first.locator(".actor").inner_text(), first.locator(".action").inner_text(),
            first.locator(".note").inner_text()) == ("alice", "approved", "owner confirmed by phone")
    shot(page, "practice")
    [entry] = [e for e in admin.audit(pid) if e.action == "approved"]
    assert (entry.actor, entry.note) == ("alice", "owner confirmed by phone")


def test_a_viewer_sees_the_same_page_cannot_approve_and_a_forged_post_is_refused(page, console, held):
    pid, old, new = held
    sign_in(page, console, "victor")
    page.goto(f"{console}/practices/{pid}/change")
    assert new in page.inner_text("#side-by-side")
    assert page.locator("#approve").count() == 0 and page.locator("#viewer-note").is_visible()

    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    forged = page.request.post(f"{console}/practices/{pid}/approve", form={"csrf": csrf, "note": "forged"})
    assert forged.status == 403 and "Viewers see everything and change nothing" in forged.text()
    assert admin.practice(pid).state == "held"
    assert [e.actor for e in admin.audit(pid)] == ["worker"]


def test_a_post_without_a_csrf_token_is_refused(page, console, held):
    pid, _, _ = held
    sign_in(page, console, "alice")
    refused = page.request.post(f"{console}/practices/{pid}/approve", form={"note": "no token"})
    assert refused.status == 403 and "security token" in refused.text()
    assert admin.practice(pid).state == "held"


def test_signed_out_no_practice_data_is_visible(page, console, held):
    pid, old, new = held
    sign_in(page, console, "alice")
    page.goto(f"{console}/tickets")
    shot(page, "tickets")
    page.click("header .who button[type=submit]")  # sign out
    page.wait_for_selector("#signin")
    for path in ["/", f"/practices/{pid}", f"/practices/{pid}/change", "/tickets", "/audit", "/practices?q=Halo"]:
        response = page.goto(f"{console}{path}")
        text = page.content()
        assert response.status == 401 and page.locator("#signin").is_visible(), path
        assert not any(s in text for s in (old, new, "Halo Clinic", "Harbour Dental", "Bayside")), path
    shot(page, "sign-in")


def test_readable_on_a_phone(browser, console, held):
    pid, _, _ = held
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        sign_in(page, console, "alice")
        page.goto(f"{console}/practices/{pid}/change")
        # Nothing wider than the screen: no sideways scrolling to read a GUID or press approve.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.locator("#approve button").is_visible()
        shot(page, "held-change-phone")
    finally:
        context.close()

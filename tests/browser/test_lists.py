"""Lists at fleet scale and accessibility, in a real browser: the practice browser's states and counts,
its search and pages, the audit's filters and pages, times in the reader's zone, and axe-core over
every page in light and dark, an admin's pages as an admin (PRODUCT.md, "The operator console"; issue 22)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models import Action, OperatorDecision, PmsType, PracticeState, Reconciliation, Trigger, Verdict
from reconciler.adapters.store import SqlStore
from tests.browser.conftest import PASSWORD
from tests.browser.test_console import held, shot, sign_in  # noqa: F401 (a fixture and helpers)
from worker import admin

pytestmark = pytest.mark.integration  # a browser, serve and the simulator as real processes

FLEET = 120  # more than two pages of 50
NOW = datetime.now(UTC).replace(microsecond=0)


def state_of(i: int) -> PracticeState:
    return PracticeState.HELD if i % 5 == 0 else PracticeState.BACKOFF if i % 7 == 0 else PracticeState.ACTIVE


@pytest.fixture
def fleet(sim):
    """120 practices (24 held, 14 backing off), an hour of audit, and an approver."""
    with admin.unit_of_work() as session:  # the embedded schema made on first use
        ids = []
        for i in range(FLEET):
            row = SqlStore(session).add_practice(pms_type="BestPractice", pms_id=f"BP{i:04d}",
                                     halo_guid=f"00000000-0000-4000-8000-{i:012d}",
                                     identifiers={"practice_name": f"{'Bondi' if i % 4 == 0 else 'Carlton'} Clinic {i}"},
                                     now=NOW - timedelta(days=3))
            row.state = state_of(i)
            ids.append(row.id)
        session.flush()
        for minute in range(90):
            at = NOW - timedelta(minutes=minute)
            pid = ids[minute % FLEET]
            session.add(Reconciliation(practice_id=pid, trigger=Trigger.SWEEP, started_at=at, finished_at=at,
                                       verdict=Verdict.UNCHANGED, action=Action.MARKED_VERIFIED))
            if minute % 3 == 0:
                session.add(OperatorDecision(at=at, actor="alice" if minute % 2 else "bob", action="acknowledged",
                                             practice_id=pid, note=f"call {minute}"))
        session.commit()
    if "alice" not in {o.name for o in admin.list_operators()}:  # the held fixture may have added her
        admin.add_operator("alice", "approver", PASSWORD)
    return ids


def row_ids(page, table: str = "#results") -> list[int]:
    return [int(t) for t in page.locator(f"{table} tbody tr td:first-child").all_inner_texts()]


def test_the_practice_browser_counts_filters_searches_and_pages(page, console, fleet):
    sign_in(page, console, "alice")
    page.goto(f"{console}/practices")
    held_n = sum(1 for i in range(FLEET) if state_of(i) is PracticeState.HELD)
    assert page.inner_text("#found").strip() == f"{FLEET} practices."
    assert re.search(rf"held\s+{held_n}\b", page.inner_text("#states"))

    seen = row_ids(page)
    assert len(seen) == 50 and page.locator("#first-page").count() == 0
    while page.locator("#next-page").count():
        page.click("#next-page")
        page.wait_for_selector("#first-page")
        seen += row_ids(page)
    assert seen == fleet  # every practice once, in id order, over three pages
    assert len(row_ids(page)) == FLEET - 100

    page.click("#states a:has-text('held')")
    page.wait_for_url(re.compile(r"state=held"))
    assert page.inner_text("#found").strip() == f"{held_n} held of {FLEET}."
    assert set(page.locator("#results td[data-label=State]").all_inner_texts()) == {"held"}
    assert row_ids(page) == [pid for i, pid in enumerate(fleet) if state_of(i) is PracticeState.HELD]

    page.fill("#q", "bondi")
    page.click("#search button[type=submit]")
    page.wait_for_url(re.compile(r"q=bondi"))
    bondi_held = [pid for i, pid in enumerate(fleet) if i % 4 == 0 and state_of(i) is PracticeState.HELD]
    assert page.inner_text("#found").startswith(f"{len(bondi_held)} held practices found for “bondi”")
    assert row_ids(page) == bondi_held  # the search kept the state filter
    page.click("#states a:has-text('every state')")
    page.wait_for_url(re.compile(r"q=bondi$"))
    assert page.inner_text("#found").startswith(f"{FLEET // 4} practices found for “bondi”")
    shot(page, "practices")


def test_the_audit_filters_by_actor_action_practice_and_date_and_pages_with_them(page, console, fleet):
    sign_in(page, console, "alice")
    page.goto(f"{console}/audit")
    assert page.locator("#audit tbody tr").count() == 50 and page.locator("#next-page").count() == 1

    page.fill("#audit-filters input[name=actor]", "alice")
    page.select_option("#audit-filters select[name=action]", "acknowledged")
    page.click("#audit-filters button[type=submit]")
    page.wait_for_url(re.compile(r"actor=alice"))
    actors = page.locator("#audit .actor").all_inner_texts()
    assert actors and set(actors) == {"alice"}
    assert set(page.locator("#audit .action").all_inner_texts()) == {"acknowledged"}
    expected = [m for m in range(90) if m % 3 == 0 and m % 2]
    assert page.locator("#audit .note").all_inner_texts() == [f"call {m}" for m in expected]
    # Practice names beside their ids.
    first = fleet[expected[0] % FLEET]
    assert f"Clinic {expected[0] % FLEET}" in page.locator("#audit td[data-label=Practice]").first.inner_text()

    page.goto(f"{console}/audit?practice={first}")
    assert set(page.locator("#audit td[data-label=Practice] a").all_inner_texts()) == {admin.practice(first).practice_name}

    tomorrow = (NOW + timedelta(days=1)).date().isoformat()
    page.goto(f"{console}/audit?since={tomorrow}")
    assert page.inner_text("#audit tbody").strip() == "Nothing yet."

    # Pages keep the filters: the worker's 90 rows are two pages.
    page.goto(f"{console}/audit?actor=worker")
    first_page = page.locator("#audit .actor").all_inner_texts()
    page.click("#next-page")
    page.wait_for_selector("#first-page")
    second_page = page.locator("#audit .actor").all_inner_texts()
    assert (len(first_page), len(second_page)) == (50, 40) and set(first_page + second_page) == {"worker"}
    assert "actor=worker" in page.url and page.locator("#next-page").count() == 0

    refused = page.goto(f"{console}/audit?cursor=not-a-cursor")
    assert refused.status == 400 and "cursor" in page.inner_text("main")


def test_times_show_in_the_readers_own_zone(browser, console, fleet):
    context = browser.new_context(timezone_id="Australia/Sydney", locale="en-AU")
    try:
        page = context.new_page()
        sign_in(page, console, "alice")
        page.goto(f"{console}/audit")
        first = page.locator("#audit time").first
        utc = first.get_attribute("datetime")
        shown = first.inner_text()
        assert first.get_attribute("title").endswith("(UTC)") and "Z" not in shown
        assert re.search(r"AEDT|AEST|GMT\+1[01]", shown), shown
        sydney = page.evaluate("(s) => new Date(s).toLocaleString('en-AU', {timeZone: 'Australia/Sydney', hour: '2-digit', minute: '2-digit'})", utc)
        assert sydney.split()[0] in shown
    finally:
        context.close()


# --- axe-core -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def axe_source(tmp_path_factory) -> str:
    """axe-core from the npm registry, installed by this suite (npm caches it after the first time)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("axe-core is installed with npm, and there is no npm here (Debian's `npm` package)")
    where = tmp_path_factory.mktemp("axe")
    done = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(where), "axe-core@4"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NODE_ENV": "production"})
    script = where / "node_modules" / "axe-core" / "axe.min.js"
    if done.returncode != 0 or not script.exists():
        pytest.fail(f"npm install axe-core failed: {done.stderr[-1000:]}")
    return script.read_text()


def axe_violations(page, source: str) -> list[dict]:
    page.add_script_tag(content=source)  # the context bypasses the console's CSP for this one script
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    assert result["testEngine"]["name"] == "axe-core" and len(result["passes"]) >= 10  # it checked the page
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result["violations"]]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_on_any_page(browser, console, held, fleet, axe_source, scheme):
    pid, _, _ = held
    [ticket] = [t for t in admin.list_tickets() if t.practice_id == pid]
    context = browser.new_context(bypass_csp=True, color_scheme=scheme, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{console}/signin")
        found = {"/signin": axe_violations(page, axe_source)}
        sign_in(page, console, "alice")
        for path in ["/", "/practices", "/practices?state=held&q=clinic", f"/practices/{pid}",
                     f"/practices/{pid}/change", "/tickets", f"/tickets/{ticket.id}", "/audit", "/audit?actor=alice",
                     "/runbook"]:
            page.goto(f"{console}{path}")
            found[path] = axe_violations(page, axe_source)
        if scheme == "dark":
            page.goto(f"{console}/practices/{pid}/change")
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(20, 23, 27)"
            shot(page, "held-change-dark")
        serious = {path: [v for v in vs if v["impact"] in ("serious", "critical")] for path, vs in found.items()}
        assert not any(serious.values()), serious
        # The ticket's runbook link opens its section of the console's own runbook page.
        page.goto(f"{console}/tickets/{ticket.id}")
        page.click("#runbook a")
        page.wait_for_url(re.compile(r"/runbook#4-held-changes$"))
        assert page.locator("h2[id='4-held-changes']").inner_text() == "4. Held changes"
        # The skip link is the first thing a keyboard reaches, and it lands on the content.
        page.goto(f"{console}/audit")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    finally:
        context.close()


@pytest.fixture
def admins_world(sim, monkeypatch):
    """An admin, an approver, a disabled viewer, and outbox events: a failed webhook event (an admin's
    page shows it with its Send again button) and, listed under every status, the rest."""
    from models import TicketKind, TicketReason
    from tests.utils.servers import free_port

    monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/hooks")  # nothing listens
    monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_SECRET", "browser-outbox-secret-31")
    monkeypatch.setenv("HALO_RECONCILER_OUTBOX_MAX_ATTEMPTS", "1")
    from worker.config import get_settings

    get_settings.cache_clear()
    admin.add_operator("ada", "admin", PASSWORD)
    admin.add_operator("alice", "approver", PASSWORD)
    admin.add_operator("victor", "viewer", PASSWORD)
    admin.disable_operator("victor", by="ada", note="left the team")
    with admin.unit_of_work() as session:
        for reason in (TicketReason.IP_NOT_ALLOWED, TicketReason.QUOTA_EXCEEDED):
            SqlStore(session).open_ticket(kind=TicketKind.CONTACT_HALO_SUPPORT, reason=reason, practice_id=None,
                                          detail="Halo refused the call.", now=NOW - timedelta(minutes=30))
        session.commit()
    admin.deliver_tickets()  # refused: failed after its one attempt
    assert {e.status for e in admin.outbox_events()} == {"failed"}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_on_an_admins_pages(browser, admins_world, console, axe_source, scheme):
    """The pages only an admin sees as an admin: the operators and their forms, a change's message, a
    refused change's error, and the outbox with its Send again buttons (and the home page's banner)."""
    context = browser.new_context(bypass_csp=True, color_scheme=scheme, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, console, "ada")
        found = {}
        for path in ["/", "/operators", "/operators?done=operator_added", "/outbox", "/outbox?status=all",
                     "/audit?about=operators"]:
            page.goto(f"{console}{path}")
            found[path] = axe_violations(page, axe_source)
        page.goto(f"{console}/operators")
        assert page.locator("tr#operator-victor .state").inner_text() == "disabled"
        assert page.locator("#outbox-banner").count() == 1
        page.goto(f"{console}/outbox")
        assert page.locator("form.retry button").count() == 2  # an admin's Send again, one per failed event
        page.goto(f"{console}/operators")
        form = page.locator("#add-operator")  # an operator who exists already: the page again, with the error
        form.locator("input[name=name]").fill("alice")
        form.locator("input[name=password]").fill("another long password")
        form.locator("button[type=submit]").click()
        page.wait_for_load_state()
        assert "already" in page.locator("#error").inner_text(), page.content()[-2000:]
        found["/operators (refused)"] = axe_violations(page, axe_source)
        if scheme == "dark":
            shot(page, "operators-dark")
        serious = {path: [v for v in vs if v["impact"] in ("serious", "critical")] for path, vs in found.items()}
        assert not any(serious.values()), serious
        assert not any(found.values()), found  # nor any minor one
    finally:
        context.close()

"""Notifications: which ticket events a person hears about, what the message says, and the
start-up check of HALO_RECONCILER_NOTIFY_URLS. Delivery to real receivers: tests/integration/test_notify.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from models import TicketKind, TicketReason
from models.outbox import OutboxEvent, OutboxTarget, is_repeat_notified
from reconciler.adapters.store import SqlStore
from reconciler.adapters import notify
from worker import db
from worker.config import ConfigError, get_settings, load_settings

TICKET = {"id": 42, "kind": "contact_practice", "reason": "business_change", "status": "open", "practice_id": 7,
          "occurrences": 1, "opened_at": "2026-12-01T22:00:00Z", "last_seen_at": "2026-12-01T22:00:00Z",
          "acknowledged_at": None, "resolved_at": None, "detail": "The practice's name changed: call them."}


def test_repeats_are_announced_at_ten_then_at_each_doubling():
    announced = [n for n in range(1, 1000) if is_repeat_notified(n)]
    assert announced == [10, 20, 40, 80, 160, 320, 640]


@pytest.mark.parametrize(("event", "title", "kind"), [
    ("ticket.opened", "[halo-reconciler] Ticket #42 opened: contact_practice / business_change", "warning"),
    ("ticket.repeated", "[halo-reconciler] Ticket #42 seen 1 times: contact_practice / business_change", "warning"),
    ("ticket.resolved", "[halo-reconciler] Ticket #42 resolved: contact_practice / business_change", "success"),
], ids=["opened", "repeated", "resolved"])
def test_the_notice_names_the_ticket_and_links_to_its_console_page(event, title, kind):
    notice = notify.compose({"event": event, "ticket": TICKET}, public_url="https://ops.example.test/")
    assert (notice.title, notice.kind) == (title, kind)
    assert "The practice's name changed: call them." in notice.body
    assert "practice 7" in notice.body
    assert notice.body.endswith("https://ops.example.test/tickets/42")


def test_without_a_public_url_there_is_no_link():
    notice = notify.compose({"event": "ticket.opened", "ticket": {**TICKET, "practice_id": None}}, public_url=None)
    assert "/tickets/" not in notice.body and "integrator-wide" in notice.body


def test_a_secret_in_the_detail_is_blanked():
    ticket = {**TICKET, "detail": "Halo refused key abc-SECRET-123 again"}
    notice = notify.compose({"event": "ticket.opened", "ticket": ticket}, public_url=None,
                            secrets=["abc-SECRET-123", ""])
    assert "abc-SECRET-123" not in notice.body + notice.title
    assert "Halo refused key [redacted] again" in notice.body


def test_fingerprints_reveal_nothing_of_the_url():
    url = "slack://T000/B000/tokentokentoken"
    assert "token" not in notify.fingerprint(url) and len(notify.fingerprint(url)) == 16
    assert notify.fingerprint(url) == notify.fingerprint(url) != notify.fingerprint(url + "x")


def _open(occurrences: int) -> int:
    db.ensure_schema()
    with db.new_session() as session:
        for _ in range(occurrences):
            ticket = SqlStore(session).open_ticket(kind=TicketKind.CONTACT_PRACTICE,
                                                   reason=TicketReason.NOT_FOUND, practice_id=None, detail="no site",
                                                   now=datetime.now(UTC))
        session.commit()
        return ticket.id


def _rows(target: OutboxTarget) -> list[str]:
    with db.new_session() as session:
        return [row.event_id for row in session.exec(select(OutboxEvent).where(OutboxEvent.target == target)
                                                     .order_by(OutboxEvent.id)).all()]


def test_outbox_rows_per_target_and_event(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_NOTIFY_URLS", "json://127.0.0.1:9/hooks/notify")
    get_settings.cache_clear()
    ticket_id = _open(20)
    with db.new_session() as session:
        SqlStore(session).acknowledge_ticket(ticket_id, now=datetime.now(UTC))
        SqlStore(session).resolve_ticket(ticket_id, now=datetime.now(UTC))
        session.commit()
    t = f"ticket-{ticket_id}"
    assert _rows(OutboxTarget.NOTIFY) == [f"notify-{t}-opened-1", f"notify-{t}-repeated-10", f"notify-{t}-repeated-20",
                                          f"notify-{t}-resolved"]
    # The webhook hears everything a person does, the acknowledgement included.
    assert _rows(OutboxTarget.WEBHOOK) == [f"{t}-opened-1", f"{t}-repeated-10", f"{t}-repeated-20",
                                           f"{t}-acknowledged", f"{t}-resolved"]


def test_with_no_notification_url_no_notify_row_is_written(monkeypatch):
    """Nobody would deliver it: the session knows the configuration (``models.outbox.NOTIFIES``)."""
    monkeypatch.delenv("HALO_RECONCILER_NOTIFY_URLS", raising=False)
    get_settings.cache_clear()
    ticket_id = _open(10)
    with db.new_session() as session:
        SqlStore(session).resolve_ticket(ticket_id, now=datetime.now(UTC))
        session.commit()
    t = f"ticket-{ticket_id}"
    assert _rows(OutboxTarget.NOTIFY) == []
    assert _rows(OutboxTarget.WEBHOOK) == [f"{t}-opened-1", f"{t}-repeated-10", f"{t}-resolved"]


# --- HALO_RECONCILER_NOTIFY_URLS and HALO_RECONCILER_PUBLIC_URL ----------------------------------


def test_urls_split_on_commas_and_white_space(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_NOTIFY_URLS",
                       " json://127.0.0.1:9/a ,mailto://127.0.0.1:25?from=a@b.test&to=c@d.test\n slack://T1/B1/abc ")
    settings = load_settings()
    assert settings.notify_url_values == ("json://127.0.0.1:9/a", "mailto://127.0.0.1:25?from=a@b.test&to=c@d.test",
                                          "slack://T1/B1/abc")
    assert "abc" not in repr(settings.notify_urls)  # secrets: a settings dump shows none of them


def test_no_urls_is_no_notifications(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_NOTIFY_URLS", " , ")
    assert load_settings().notify_urls == ()


@pytest.mark.parametrize("bad", ["nonsense://hunter2@x", "json://", "just words"], ids=["scheme", "no-host", "not-a-url"])
def test_a_url_apprise_cannot_parse_is_a_clear_error_that_echoes_nothing(monkeypatch, bad):
    monkeypatch.setenv("HALO_RECONCILER_NOTIFY_URLS", f"json://127.0.0.1:9/ok {bad}")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert "HALO_RECONCILER_NOTIFY_URLS" in message and "entry 2" in message and "Apprise" in message
    assert "hunter2" not in message and "127.0.0.1" not in message


def test_the_public_url_is_normalised_and_checked(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_PUBLIC_URL", "https://ops.example.test/console/")
    assert load_settings().public_url == "https://ops.example.test/console"
    monkeypatch.setenv("HALO_RECONCILER_PUBLIC_URL", "ops.example.test")
    with pytest.raises(ConfigError, match="HALO_RECONCILER_PUBLIC_URL"):
        load_settings()


def test_the_console_url_names_the_practice_and_links_it_in_notices_and_webhook_bodies(monkeypatch):
    from reconciler.adapters import webhook

    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_URL", "https://ops.example.test/")
    console_url = load_settings().public_url
    assert console_url == "https://ops.example.test"
    payload = {"event": "ticket.opened", "practice_name": "Bondi Family Practice",
               "ticket": {"id": 42, "kind": "contact_practice", "reason": "not_found", "practice_id": 7,
                          "status": "open", "occurrences": 1, "detail": "gone"}}
    notice = notify.compose(payload, public_url=console_url)
    assert "Bondi Family Practice" in notice.title and "practice 7 (Bondi Family Practice)" in notice.body
    assert "https://ops.example.test/practices/7" in notice.body
    body = json.loads(webhook.encode("ticket-42-opened-1", payload, console_url=console_url))
    assert body["practice_name"] == "Bondi Family Practice"
    assert body["links"] == {"ticket": "https://ops.example.test/tickets/42",
                             "practice": "https://ops.example.test/practices/7"}
    assert "links" not in json.loads(webhook.encode("ticket-42-opened-1", payload))  # no console URL: no links

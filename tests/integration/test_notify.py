"""Ticket notifications reach real receivers on loopback through Apprise: its JSON target (an HTTP
server), e-mail (an aiosmtpd SMTP server) and a Slack-compatible incoming webhook (``mmost://``
posts Slack's ``{"text": ...}`` payload). Tickets are written by the real SQL adapter on PostgreSQL;
delivery runs from the outbox exactly as the worker's ``halo.deliver_outbox`` task runs it, and the
last test has a real worker open the ticket and deliver it by itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from models import PmsType, TicketKind, TicketReason
from models.outbox import OutboxEvent, OutboxTarget
from reconciler.adapters.store import SqlStore
from tests.integration.conftest import use_environment
from tests.utils.receivers import http_receiver, smtp_receiver
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers
from worker import admin, db, wiring
from worker.hooks import report_forbidden

pytestmark = pytest.mark.integration

KEY = "sub-key-NEVER-IN-A-NOTIFICATION-7f3a"
PUBLIC = "https://reconciler.example.test/console"


@pytest.fixture
def receivers(monkeypatch, tmp_path, postgres_url):
    with http_receiver() as http, smtp_receiver() as smtp:
        urls = {
            "json": f"json://127.0.0.1:{http.url.rsplit(':', 1)[1]}/hooks/notify",
            "slack": f"mmost://127.0.0.1:{http.url.rsplit(':', 1)[1]}/slackcompatibletoken",
            "mail": f"mailto://{smtp.host}:{smtp.port}?from=halo@example.test&to=ops@example.test",
        }
        use_environment(monkeypatch, {
            "DATABASE_URL": postgres_url,
            "HALO_SUBSCRIPTION_KEY": KEY,
            "HALO_RECONCILER_NOTIFY_URLS": f"{urls['json']}, {urls['slack']} {urls['mail']}",
            "HALO_RECONCILER_PUBLIC_URL": PUBLIC + "/",
            "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data"),
        })
        db.upgrade_schema()
        yield http, smtp


def _count(*, practice_id=None, detail="Halo says the caller IP is not allowed.", now=None) -> int:
    with db.new_session() as session:
        ticket = SqlStore(session).open_ticket(kind=TicketKind.CONTACT_HALO_SUPPORT,
                                               reason=TicketReason.IP_NOT_ALLOWED, practice_id=practice_id,
                                               detail=detail, now=now or datetime.now(UTC))
        session.commit()
        return ticket.id


def _resolve(ticket_id: int) -> None:
    with db.new_session() as session:
        SqlStore(session).resolve_ticket(ticket_id, now=datetime.now(UTC))
        session.commit()


def test_open_repeat_and_resolve_reach_json_slack_and_mail_with_the_console_link(receivers):
    http, smtp = receivers
    ticket_id = _count()
    for _ in range(9):  # occurrences 2..10: the 10th is announced once as "repeated"
        _count()
    _resolve(ticket_id)

    report = wiring.deliver_outbox()

    assert (report.sent, report.failed) == (3, 0)  # three notify rows; no webhook configured
    link = f"{PUBLIC}/tickets/{ticket_id}"
    [opened, repeated, resolved] = [r.json() for r in http.on("/hooks/notify")]
    assert opened["title"] == f"[halo-reconciler] Ticket #{ticket_id} opened: contact_halo_support / ip_not_allowed"
    assert repeated["title"] == (f"[halo-reconciler] Ticket #{ticket_id} seen 10 times: "
                                 "contact_halo_support / ip_not_allowed")
    assert resolved["title"].startswith(f"[halo-reconciler] Ticket #{ticket_id} resolved")
    assert [opened["type"], repeated["type"], resolved["type"]] == ["warning", "warning", "success"]
    assert all(link in n["message"] and "caller IP is not allowed" in n["message"] for n in (opened, repeated, resolved))

    slack = [r.json() for r in http.on("/hooks/slackcompatibletoken")]
    assert len(slack) == 3 and all(link in m["text"] for m in slack)

    assert [mail.rcpt_tos for mail in smtp.received] == [["ops@example.test"]] * 3
    assert [mail.message["Subject"] for mail in smtp.received] == [opened["title"], repeated["title"], resolved["title"]]
    assert all(link in mail.text() for mail in smtp.received)

    # Everything delivered stays delivered: a second run sends nothing.
    again = wiring.deliver_outbox()
    assert (again.sent, again.failed) == (0, 0)
    assert len(http.received) == 6 and len(smtp.received) == 3


def test_a_failing_receiver_is_retried_alone_with_the_same_event(receivers):
    http, smtp = receivers
    http.fail_next = 1  # the JSON target (first in the list) refuses the first notification
    _count()

    first = wiring.deliver_outbox()
    assert (first.sent, first.failed) == (0, 1)
    assert len(smtp.received) == 1 and len(http.on("/hooks/slackcompatibletoken")) == 1
    assert http.on("/hooks/notify") == []
    with db.new_session() as session:
        [row] = session.exec(select(OutboxEvent).where(OutboxEvent.target == OutboxTarget.NOTIFY)).all()
        assert row.attempts == 1 and row.delivered_at is None and len(row.delivered_to) == 2
        assert "json" in row.last_error and "127.0.0.1" not in row.last_error  # a scheme, never the URL
        due = row.next_attempt_at
    assert due - datetime.now(UTC) > timedelta(seconds=5)  # backed off, not retried at once

    with db.new_session() as session:
        row = session.exec(select(OutboxEvent).where(OutboxEvent.target == OutboxTarget.NOTIFY)).one()
        row.next_attempt_at = datetime.now(UTC)  # as if the backoff had passed
        session.add(row)
        session.commit()
    second = wiring.deliver_outbox()

    assert (second.sent, second.failed) == (1, 0)
    assert len(http.on("/hooks/notify")) == 1  # the one that failed, now taken
    assert len(smtp.received) == 1 and len(http.on("/hooks/slackcompatibletoken")) == 1  # not sent twice


def test_no_secret_reaches_a_notification(receivers):
    http, smtp = receivers
    # A detail that quotes the key (it should never, but a notification must not carry it if it did).
    _count(detail=f"Halo refused key {KEY} from this IP")

    wiring.deliver_outbox()

    sent = b"".join(r.body for r in http.received).decode() + "".join(m.message.as_string() for m in smtp.received)
    assert sent and KEY not in sent
    assert "[redacted]" in sent


def test_a_worker_that_opens_a_ticket_notifies_by_itself(stack, tmp_path, monkeypatch):
    """The whole path: a report, a real worker's reconciliation opens a business_change ticket, and
    its ``halo.deliver_outbox`` task sends the notification, link included, with nobody asking."""
    sim, env = stack
    with http_receiver() as http:
        env = {**env, "HALO_RECONCILER_NOTIFY_URLS": f"json://127.0.0.1:{http.url.rsplit(':', 1)[1]}/hooks/notify",
               "HALO_RECONCILER_PUBLIC_URL": PUBLIC}
        use_environment(monkeypatch, env)
        sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z-NOTE", practice_name="Notified Clinic")
        practice = admin.onboard("Zedmed", "Z-NOTE")
        sim.rename(practice.halo_guid, "New Owners Clinic")
        workers = start_workers(env, tmp_path, count=1)
        try:
            assert report_forbidden(practice.halo_guid, "Forbidden")
            wait_until(lambda: http.on("/hooks/notify"), timeout=60, what="the notification")
        finally:
            stop_workers(workers)
        [notice] = [r.json() for r in http.on("/hooks/notify")]
        [ticket] = admin.list_tickets()
        assert (ticket.kind, ticket.reason, ticket.practice_id) == ("contact_practice", "business_change", practice.id)
        # The practice's name beside its id, and its console page beside the ticket's.
        assert notice["title"] == (f"[halo-reconciler] Ticket #{ticket.id} opened: contact_practice / business_change "
                                   f"for {practice.practice_name}")
        assert f"{PUBLIC}/tickets/{ticket.id}" in notice["message"]
        assert f"practice {practice.id} ({practice.practice_name})" in notice["message"]
        assert f"{PUBLIC}/practices/{practice.id}" in notice["message"]
        assert stack[1]["HALO_SUBSCRIPTION_KEY"] not in notice["message"]

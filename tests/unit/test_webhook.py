"""Tickets reach the webhook signed, exactly once per event, even when the receiver fails first."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlmodel import select

from models import TicketKind, TicketReason
from models.outbox import OutboxEvent
from reconciler.adapters import tickets
from reconciler.adapters.outbox import deliver_pending
from reconciler.adapters import webhook
from worker import db

SECRET = "webhook-secret-for-tests"


class Receiver:
    """A real HTTP server on loopback that records what it gets and can fail on demand."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(503)
                else:
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/tickets"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _open_ticket() -> int:
    db.ensure_schema()
    with db.new_session() as session:
        ticket, _ = tickets.open_or_count(session, kind=TicketKind.CONTACT_PRACTICE, reason=TicketReason.NOT_FOUND,
                                          practice_id=None, detail="no site", now=datetime.now(UTC))
        session.commit()
        return ticket.id


def test_signature_verifies_independently(receiver):
    ticket_id = _open_ticket()

    report = deliver_pending(db.new_session, url=receiver.url, secret=SECRET)

    assert (report.sent, report.failed) == (1, 0)
    [(headers, body)] = receiver.received
    timestamp = headers["x-halo-reconciler-timestamp"]
    expected = hmac.new(SECRET.encode(), body + b"." + timestamp.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-halo-reconciler-signature"], expected)
    assert webhook.verify(SECRET, body, timestamp, headers["x-halo-reconciler-signature"])
    assert not webhook.verify(SECRET, body + b" ", timestamp, headers["x-halo-reconciler-signature"])
    document = json.loads(body)
    assert document["id"] == headers["x-halo-reconciler-id"]
    assert document["event"] == "ticket.opened"
    assert document["ticket"]["id"] == ticket_id


def test_failed_delivery_is_retried_with_the_same_event_id_and_sent_once(receiver):
    _open_ticket()
    receiver.fail_next = 1

    first = deliver_pending(db.new_session, url=receiver.url, secret=SECRET)
    assert (first.sent, first.failed) == (0, 1)
    with db.new_session() as session:
        [event] = session.exec(select(OutboxEvent)).all()
        assert event.delivered_at is None and event.attempts == 1
        due = event.next_attempt_at

    assert deliver_pending(db.new_session, url=receiver.url, secret=SECRET).sent == 0  # not due yet
    second = deliver_pending(db.new_session, url=receiver.url, secret=SECRET, now=lambda: due)
    assert second.sent == 1
    assert deliver_pending(db.new_session, url=receiver.url, secret=SECRET, now=lambda: due).sent == 0
    assert len(receiver.received) == 1


def test_a_counted_occurrence_is_a_new_event_but_redelivery_is_not(receiver):
    _open_ticket()
    _open_ticket()  # same key: counted, occurrences 2
    deliver_pending(db.new_session, url=receiver.url, secret=SECRET)
    ids = [h["x-halo-reconciler-id"] for h, _ in receiver.received]
    assert len(ids) == 1  # only "opened" is an event; counting an occurrence updates the open ticket

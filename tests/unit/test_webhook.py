"""Tickets reach the webhook signed, exactly once per event, even when the receiver fails first."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import httpx
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
    """An in-process webhook receiver (an ``httpx.MockTransport``): records what it gets and can fail
    on demand. The real wire is the reliability suite's (tests/reliability/test_secret_hygiene.py)."""

    url = "http://receiver.test/hooks/tickets"

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == self.url and request.method == "POST"
        if self.fail_next:
            self.fail_next -= 1
            return httpx.Response(503)
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, request.read()))
        return httpx.Response(204)


@pytest.fixture
def receiver():
    return Receiver()


def _open_ticket() -> int:
    db.ensure_schema()
    with db.new_session() as session:
        ticket, _ = tickets.open_or_count(session, kind=TicketKind.CONTACT_PRACTICE, reason=TicketReason.NOT_FOUND,
                                          practice_id=None, detail="no site", now=datetime.now(UTC))
        session.commit()
        return ticket.id


def test_signature_verifies_independently(receiver):
    ticket_id = _open_ticket()

    report = deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport)

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

    first = deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport)
    assert (first.sent, first.failed) == (0, 1)
    with db.new_session() as session:
        [event] = session.exec(select(OutboxEvent)).all()
        assert event.delivered_at is None and event.attempts == 1
        due = event.next_attempt_at

    assert deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport).sent == 0  # not due yet
    second = deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport, now=lambda: due)
    assert second.sent == 1
    assert deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport, now=lambda: due).sent == 0
    assert len(receiver.received) == 1


def test_a_counted_occurrence_is_not_a_new_event(receiver):
    _open_ticket()
    _open_ticket()  # same key: counted, occurrences 2
    deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport)
    ids = [h["x-halo-reconciler-id"] for h, _ in receiver.received]
    assert len(ids) == 1  # only "opened" is an event; counting an occurrence updates the open ticket

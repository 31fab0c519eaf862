"""Tickets reach the webhook signed, exactly once per event, even when the receiver fails first."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from sqlmodel import select

from models import TicketKind, TicketReason
from models.outbox import OutboxEvent, OutboxTarget
from reconciler.adapters.store import SqlStore
from reconciler.adapters.outbox import deliver_pending
from reconciler.adapters import webhook
from worker import db
from worker.config import get_settings

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
        ticket = SqlStore(session).open_ticket(kind=TicketKind.CONTACT_PRACTICE, reason=TicketReason.NOT_FOUND,
                                               practice_id=None, detail="no site", now=datetime.now(UTC))
        session.commit()
        return ticket.id


def test_signature_verifies_independently(receiver):
    ticket_id = _open_ticket()

    report = deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport)

    assert (report.sent, report.failed) == (1, 0)
    [(headers, body)] = receiver.received
    timestamp = headers["x-halo-timestamp"]
    # Halo's scheme: an ISO 8601 timestamp header, HMAC-SHA256 over "<body>.<timestamp>", hex.
    signed_at = datetime.fromisoformat(timestamp)
    assert signed_at.tzinfo is not None and abs(datetime.now(UTC) - signed_at) < timedelta(minutes=1)
    expected = hmac.new(SECRET.encode(), body + b"." + timestamp.encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-halo-signature-256"], expected)
    assert webhook.verify(SECRET, body, timestamp, headers["x-halo-signature-256"])
    assert not webhook.verify(SECRET, body + b" ", timestamp, headers["x-halo-signature-256"])
    assert not webhook.verify("another-secret", body, timestamp, headers["x-halo-signature-256"])
    document = json.loads(body)
    assert document["id"] == headers["x-halo-id"]
    assert document["event"] == "ticket.opened"
    assert document["ticket"]["id"] == ticket_id


def test_failed_delivery_is_retried_with_the_same_event_id_and_sent_once(receiver):
    _open_ticket()
    receiver.fail_next = 1

    first = deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport)
    assert (first.sent, first.failed) == (0, 1)
    with db.new_session() as session:
        [event] = session.exec(select(OutboxEvent).where(OutboxEvent.target == OutboxTarget.WEBHOOK)).all()
        assert event.delivered_at is None and event.attempts == 1
        due = event.next_attempt_at

    assert deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport).sent == 0  # not due yet
    second = deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport, now=lambda: due)
    assert second.sent == 1
    assert deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport, now=lambda: due).sent == 0
    assert len(receiver.received) == 1
    [(headers, _)] = receiver.received
    assert headers["x-halo-id"] == "ticket-1-opened-1"


def test_a_counted_occurrence_is_not_a_new_event(receiver):
    _open_ticket()
    _open_ticket()  # same key: counted, occurrences 2
    deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport)
    ids = [h["x-halo-id"] for h, _ in receiver.received]
    assert ids == ["ticket-1-opened-1"]  # counting an occurrence updates the open ticket


def test_the_webhook_sends_only_its_own_rows(receiver, monkeypatch):
    """The notification row of the same event is another target's: the webhook neither sends nor
    marks it."""
    monkeypatch.setenv("HALO_RECONCILER_NOTIFY_URLS", "json://127.0.0.1:9/hooks/notify")
    get_settings.cache_clear()
    _open_ticket()
    deliver_pending(db.new_session, url=receiver.url, secret=SECRET, transport=receiver.transport)
    with db.new_session() as session:
        rows = {row.target: row for row in session.exec(select(OutboxEvent)).all()}
    assert set(rows) == {OutboxTarget.WEBHOOK, OutboxTarget.NOTIFY}
    assert rows[OutboxTarget.WEBHOOK].delivered_at is not None
    assert rows[OutboxTarget.NOTIFY].delivered_at is None and rows[OutboxTarget.NOTIFY].attempts == 0
    assert rows[OutboxTarget.NOTIFY].event_id == "notify-ticket-1-opened-1"


# --- verify: what a receiver runs on whatever arrived ----------------------------------------------

BODY = b'{"event":"ticket.opened","id":"ticket-1-opened-1"}'
SIGNED_AT = datetime(2026, 12, 1, 22, 0, 0, tzinfo=UTC)
STAMP = webhook.format_timestamp(SIGNED_AT)


def _verify(signature=None, *, timestamp=STAMP, body=BODY, now=SIGNED_AT, **options):
    signature = webhook.sign(SECRET, BODY, STAMP) if signature is None else signature
    return webhook.verify(SECRET, body, timestamp, signature, now=now, **options)


def test_the_timestamp_is_iso_8601_utc():
    assert STAMP == "2026-12-01T22:00:00+00:00"
    sydney = timezone(timedelta(hours=11))
    assert webhook.format_timestamp(SIGNED_AT.astimezone(sydney)) == STAMP
    with pytest.raises(ValueError):
        webhook.format_timestamp(datetime(2026, 12, 1, 22, 0, 0))


@pytest.mark.parametrize("age", [timedelta(0), timedelta(minutes=4, seconds=59), -timedelta(minutes=4, seconds=59),
                                 timedelta(minutes=5)],
                         ids=["now", "just-inside", "just-inside-future", "edge"])
def test_inside_the_replay_window_verifies(age):
    assert _verify(now=SIGNED_AT + age)


@pytest.mark.parametrize("age", [timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1), timedelta(days=1)],
                         ids=["just-old", "future", "a-day-old"])
def test_outside_the_replay_window_is_rejected(age):
    assert not _verify(now=SIGNED_AT + age)


def test_the_window_is_the_receivers_to_choose():
    assert _verify(now=SIGNED_AT + timedelta(minutes=30), window=timedelta(hours=1))
    assert not _verify(now=SIGNED_AT + timedelta(seconds=31), window=timedelta(seconds=30))


def test_the_prefix_and_case_of_the_digest_do_not_matter():
    digest = webhook.sign(SECRET, BODY, STAMP)
    assert _verify("sha256=" + digest)
    assert _verify(digest.upper())
    assert _verify("  " + digest + " ")


def test_a_zulu_timestamp_is_the_same_instant():
    stamp = "2026-12-01T22:00:00Z"
    assert webhook.verify(SECRET, BODY, stamp, webhook.sign(SECRET, BODY, stamp), now=SIGNED_AT)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body"),
    [
        ("1764626400", None, BODY),  # the old Unix-seconds header
        ("not a time", None, BODY),
        ("", None, BODY),
        ("2026-12-01T22:00:00", None, BODY),  # no zone: says nothing about when
        (None, None, BODY),
        (STAMP, "", BODY),
        (STAMP, "zz" * 32, BODY),
        (STAMP, "ab" * 31, BODY),
        (STAMP, "é" * 64, BODY),  # not ASCII: compare_digest would raise on it
        (STAMP, 12345, BODY),
        (STAMP, None, None),
        (STAMP, None, 12345),
    ],
    ids=["unix-seconds", "prose", "empty-timestamp", "naive", "none-timestamp", "empty-signature", "not-hex",
         "short", "non-ascii", "int-signature", "none-body", "int-body"],
)
def test_malformed_input_is_false_not_an_exception(timestamp, signature, body):
    assert _verify(signature, timestamp=timestamp, body=body) is False


def test_an_empty_secret_never_verifies():
    assert webhook.verify("", BODY, STAMP, webhook.sign("", BODY, STAMP), now=SIGNED_AT) is False

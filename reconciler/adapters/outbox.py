"""Deliver the outbox to the webhook: at least once, in order per event id, with backoff.

Events are written in the same transaction as the ticket change they describe, so a crash between
commit and send loses nothing; a retry re-sends the same event id, so the receiver never sees a
second ticket. On PostgreSQL rows are claimed with ``FOR UPDATE SKIP LOCKED`` so two workers never
send the same event at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlmodel import Session, col, select

from models.outbox import OutboxEvent
from reconciler.adapters import webhook
from reconciler.core import backoff

log = structlog.get_logger()

RETRY_MIN = timedelta(seconds=15)
RETRY_MAX = timedelta(hours=1)
GIVE_UP_AFTER = 50  # about two days at the capped interval


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    failed: int


def retry_delay(attempts: int) -> timedelta:
    """After ``attempts`` failed sends: 15 s doubling to an hour (one sender per event: no jitter)."""
    return timedelta(seconds=backoff.exponential(attempts - 1, base=RETRY_MIN.total_seconds(),
                                                 cap=RETRY_MAX.total_seconds()))


def deliver_pending(
    session_factory: Callable[[], Session],
    *,
    url: str,
    secret: str,
    transport: httpx.BaseTransport | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 100,
    timeout: float = 5.0,
) -> DeliveryReport:
    sent = failed = 0
    with httpx.Client(transport=transport, timeout=timeout, follow_redirects=False) as client, session_factory() as session:
        query = (
            select(OutboxEvent)
            .where(col(OutboxEvent.delivered_at).is_(None), OutboxEvent.next_attempt_at <= now(),
                   OutboxEvent.attempts < GIVE_UP_AFTER)
            .order_by(col(OutboxEvent.id))
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for event in session.exec(query).all():
            body = webhook.encode(event.event_id, event.payload)
            event.attempts += 1
            try:
                webhook.post(client, url, secret, event_id=event.event_id, body=body, timestamp=int(time.time()))
            except webhook.WebhookRejected as exc:
                event.last_error = str(exc)[:500]
                event.next_attempt_at = now() + retry_delay(event.attempts)
                failed += 1
                log.warning("webhook_delivery_failed", event_id=event.event_id, attempts=event.attempts, error=str(exc))
            else:
                event.delivered_at = now()
                event.last_error = None
                sent += 1
                log.info("webhook_delivered", event_id=event.event_id, event_type=event.event_type)
            session.add(event)
            session.commit()  # one event at a time: a crash mid-batch re-sends at most one
    return DeliveryReport(sent=sent, failed=failed)

"""Deliver the outbox to its targets (the webhook, the notification URLs): at least once, in order
per event id, with backoff.

Events are written in the same transaction as the ticket change they describe, so a crash between
commit and send loses nothing; a retry re-sends the same event id, so the receiver never sees a
second ticket. Each target has its own rows, so each has its own attempts and backoff. On PostgreSQL
rows are claimed with ``FOR UPDATE SKIP LOCKED`` so two workers never send the same event at once.

Nothing is dropped (PRODUCT.md, "Nothing is delivered silently late"): a row that used its last
attempt becomes ``failed`` and stays, listed by ``outbox list`` and sent again by ``outbox retry``;
``outbox_rows`` lists them and tells ``health`` and the metrics what has waited and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlmodel import Session, col, select

from models.outbox import OutboxEvent, OutboxStatus, OutboxTarget
from reconciler.adapters import notify, webhook
from reconciler.core import backoff

log = structlog.get_logger()

RETRY_MIN = timedelta(seconds=15)
RETRY_MAX = timedelta(hours=1)
GIVE_UP_AFTER = 50  # about two days at the capped interval (HALO_RECONCILER_OUTBOX_MAX_ATTEMPTS)


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    failed: int

    def __add__(self, other: "DeliveryReport") -> "DeliveryReport":
        return DeliveryReport(sent=self.sent + other.sent, failed=self.failed + other.failed)


def retry_delay(attempts: int) -> timedelta:
    """After ``attempts`` failed sends: 15 s doubling to an hour (one sender per event: no jitter)."""
    return timedelta(seconds=backoff.exponential(attempts - 1, base=RETRY_MIN.total_seconds(),
                                                 cap=RETRY_MAX.total_seconds()))


class _Rejected(Exception):
    """One target's send failed; what it already delivered is kept."""

    def __init__(self, message: str, delivered: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.delivered = delivered


def _drain(
    session_factory: Callable[[], Session],
    *,
    target: OutboxTarget,
    send: Callable[[OutboxEvent], list[str] | None],
    now: Callable[[], datetime],
    limit: int,
    max_attempts: int = GIVE_UP_AFTER,
    only: int | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> DeliveryReport:
    """Send the due pending rows of ``target``; or, with ``only``, that one row now, pending or failed."""
    sent = failed = 0
    with session_factory() as session:
        query = select(OutboxEvent).where(OutboxEvent.target == target)
        if only is None:
            query = query.where(OutboxEvent.status == OutboxStatus.PENDING, OutboxEvent.next_attempt_at <= now())
        else:
            query = query.where(OutboxEvent.id == only, OutboxEvent.status != OutboxStatus.DELIVERED)
        query = query.order_by(col(OutboxEvent.id)).limit(limit)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for event in session.exec(query).all():
            event.attempts += 1
            try:
                delivered_to = send(event)
            except _Rejected as exc:
                if exc.delivered is not None:
                    event.delivered_to = list(exc.delivered)
                event.last_error = str(exc)[:500]
                event.next_attempt_at = now() + retry_delay(event.attempts)
                if event.status == OutboxStatus.PENDING and event.attempts >= max_attempts:
                    event.status = OutboxStatus.FAILED  # kept, listed, retried by a person; never dropped
                    log.error("outbox_event_failed", event_id=event.event_id, target=str(target),
                              attempts=event.attempts, error=str(exc))
                failed += 1
                if on_failure is not None:
                    on_failure(str(target))
                log.warning(f"{target}_delivery_failed", event_id=event.event_id, attempts=event.attempts,
                            error=str(exc))
            else:
                if delivered_to is not None:
                    event.delivered_to = delivered_to
                event.delivered_at = now()
                event.status = OutboxStatus.DELIVERED
                event.last_error = None
                sent += 1
                log.info(f"{target}_delivered", event_id=event.event_id, event_type=event.event_type)
            session.add(event)
            session.commit()  # one event at a time: a crash mid-batch re-sends at most one
    return DeliveryReport(sent=sent, failed=failed)


def deliver_pending(
    session_factory: Callable[[], Session],
    *,
    url: str,
    secret: str,
    transport: httpx.BaseTransport | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 100,
    timeout: float = 5.0,
    max_attempts: int = GIVE_UP_AFTER,
    only: int | None = None,
    on_failure: Callable[[str], None] | None = None,
    console_url: str | None = None,
) -> DeliveryReport:
    """Send the webhook's pending events, each signed when it is sent (on the real clock: ``now``
    schedules retries, and a receiver checks the signature's age against its own clock); with
    ``console_url``, each carries links to its ticket's and practice's console pages."""
    with httpx.Client(transport=transport, timeout=timeout, follow_redirects=False) as client:

        def send(event: OutboxEvent) -> None:
            try:
                webhook.post(client, url, secret, event_id=event.event_id,
                             body=webhook.encode(event.event_id, event.payload, console_url=console_url),
                             signed_at=datetime.now(UTC))
            except webhook.WebhookRejected as exc:
                raise _Rejected(str(exc)) from exc

        return _drain(session_factory, target=OutboxTarget.WEBHOOK, send=send, now=now, limit=limit,
                      max_attempts=max_attempts, only=only, on_failure=on_failure)


def deliver_notifications(
    session_factory: Callable[[], Session],
    *,
    notifier: notify.AppriseNotifier,
    public_url: str | None,
    secrets: Sequence[str] = (),
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 100,
    max_attempts: int = GIVE_UP_AFTER,
    only: int | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> DeliveryReport:
    """Send the pending notifications to every URL that has not yet taken each one."""

    def send(event: OutboxEvent) -> list[str]:
        notice = notify.compose(event.payload, public_url=public_url, secrets=secrets)
        try:
            return notifier.send(notice, already=event.delivered_to or ())
        except notify.NotificationRejected as exc:
            raise _Rejected(str(exc), exc.delivered) from exc

    return _drain(session_factory, target=OutboxTarget.NOTIFY, send=send, now=now, limit=limit,
                  max_attempts=max_attempts, only=only, on_failure=on_failure)

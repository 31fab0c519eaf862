"""The webhook ticket sink: JSON POSTs signed the way Halo Cloud signs its own webhooks.

Halo's webhooks carry three headers (its "Webhooks" documentation and announcement): ``X-Halo-Id``,
``X-Halo-Timestamp`` (ISO 8601, when the request was sent) and ``X-Halo-Signature-256``, an
HMAC-SHA256 over ``<message_body>.<timestamp_iso8601>``. Ours are the same, so a receiver that
already verifies Halo's can verify ours with the same code and our secret::

    X-Halo-Id:             the event id (stable across retries: de-duplicate on it)
    X-Halo-Timestamp:      when this attempt was signed, ISO 8601 in UTC ("2026-12-01T22:49:14+00:00")
    X-Halo-Signature-256:  lowercase hex HMAC-SHA256(secret, body + b"." + timestamp)

Halo's text does not say how the digest is written; we send bare lowercase hex and ``verify`` also
takes upper case and a ``sha256=`` prefix. docs/WEBHOOKS.md is the receiver's side of this.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

ID_HEADER = "X-Halo-Id"
TIMESTAMP_HEADER = "X-Halo-Timestamp"
SIGNATURE_HEADER = "X-Halo-Signature-256"
# A signed request older (or further in the future) than this is a replay, or a clock to fix.
REPLAY_WINDOW = timedelta(minutes=5)

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class WebhookRejected(Exception):
    """The receiver did not take the event (non-2xx, timeout, connection error)."""


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC to the second: what the timestamp header carries and the signature covers."""
    if moment.tzinfo is None:
        raise ValueError("a webhook timestamp must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """Lowercase hex HMAC-SHA256 over ``body + b"." + timestamp`` (the header's exact text)."""
    return hmac.new(secret.encode(), body + b"." + timestamp.encode(), hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, timestamp: str, signature: str, *, now: datetime | None = None,
           window: timedelta = REPLAY_WINDOW) -> bool:
    """What a receiver does: the timestamp within ``window`` of ``now``, then the HMAC recomputed over
    the raw body and compared in constant time. Anything malformed (a missing or non-ISO timestamp,
    a timestamp without a zone, a signature that is not a hex digest, a body that is not bytes) is
    ``False``, never an exception: a receiver calls this on whatever arrived.
    """
    if not isinstance(secret, str) or not secret or not isinstance(timestamp, str) or not isinstance(signature, str):
        return False
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, (bytes, bytearray, memoryview)):
        return False
    try:
        signed_at = datetime.fromisoformat(timestamp.strip())
    except ValueError:
        return False
    if signed_at.tzinfo is None:
        return False  # a local time says nothing about when it was signed
    now = now or datetime.now(UTC)
    if abs(now - signed_at) > window:
        return False
    digest = signature.strip()
    if digest[:7].lower() == "sha256=":
        digest = digest[7:]
    if not _HEX_DIGEST.fullmatch(digest):
        return False
    return hmac.compare_digest(sign(secret, bytes(body), timestamp), digest.lower())


def links(payload: dict[str, Any], console_url: str | None) -> dict[str, str]:
    """The console pages an event is about (its ticket, its practice), when the console's URL is known."""
    if not console_url:
        return {}
    base = console_url.rstrip("/")
    ticket = payload.get("ticket") if isinstance(payload.get("ticket"), dict) else {}
    practice = payload.get("practice") if isinstance(payload.get("practice"), dict) else {}
    found = {}
    if ticket.get("id") is not None:
        found["ticket"] = f"{base}/tickets/{ticket['id']}"
    practice_id = ticket.get("practice_id", practice.get("id"))
    if practice_id is not None:
        found["practice"] = f"{base}/practices/{practice_id}"
    return found


def encode(event_id: str, payload: dict[str, Any], *, console_url: str | None = None) -> bytes:
    """The body sent: the event's payload, its id and, with ``console_url``, ``links`` to the console."""
    extra = {"links": found} if (found := links(payload, console_url)) else {}
    return json.dumps({"id": event_id, **payload, **extra}, separators=(",", ":"), sort_keys=True).encode()


def post(client: httpx.Client, url: str, secret: str, *, event_id: str, body: bytes, signed_at: datetime) -> None:
    timestamp = format_timestamp(signed_at)
    headers = {
        "Content-Type": "application/json",
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, body, timestamp),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise WebhookRejected(f"{type(exc).__name__} posting to the webhook") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookRejected(f"the webhook answered {response.status_code}")

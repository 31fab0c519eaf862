"""The webhook ticket sink: JSON POSTs signed with HMAC-SHA256, the way Halo signs its own webhooks.

Each request carries::

    X-Halo-Reconciler-Id:         the event id (stable across retries: de-duplicate on it)
    X-Halo-Reconciler-Timestamp:  Unix seconds when this attempt was signed
    X-Halo-Reconciler-Signature:  hex HMAC-SHA256(secret, body + "." + timestamp)

A receiver recomputes the HMAC over the raw body bytes, compares in constant time, and rejects
timestamps older than a few minutes (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

ID_HEADER = "X-Halo-Reconciler-Id"
TIMESTAMP_HEADER = "X-Halo-Reconciler-Timestamp"
SIGNATURE_HEADER = "X-Halo-Reconciler-Signature"


class WebhookRejected(Exception):
    """The receiver did not take the event (non-2xx, timeout, connection error)."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), body + b"." + str(timestamp).encode(), hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, timestamp: str, signature: str) -> bool:
    """What a receiver does: recompute over the raw body, compare in constant time."""
    expected = sign(secret, body, int(timestamp))
    return hmac.compare_digest(expected, signature)


def encode(event_id: str, payload: dict[str, Any]) -> bytes:
    return json.dumps({"id": event_id, **payload}, separators=(",", ":"), sort_keys=True).encode()


def post(client: httpx.Client, url: str, secret: str, *, event_id: str, body: bytes, timestamp: int) -> None:
    headers = {
        "Content-Type": "application/json",
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, body, timestamp),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise WebhookRejected(f"{type(exc).__name__} posting to the webhook") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookRejected(f"the webhook answered {response.status_code}")

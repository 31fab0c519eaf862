"""JSON answers at the ASGI level (for middleware that answers before any endpoint runs)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send


async def send_json(send: Send, status: int, document: Any, *, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(document).encode("utf-8")
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})

"""Read a request body up to a limit, refusing a larger one without reading it all.

A ``Content-Length`` over the limit is refused before the first byte is read; a body that turns out
longer than it said (or has no length: chunked) is refused as soon as it passes the limit.
"""

from __future__ import annotations

from starlette.requests import Request

MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    pass


class BadContentLength(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadContentLength("Content-Length is not a number") from None
        if length < 0:
            raise BadContentLength("Content-Length is negative")
        if length > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

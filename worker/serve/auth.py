"""Bearer tokens for ``/v1/``: an ASGI middleware that answers 401 before the body is read.

Tokens are compared with ``hmac.compare_digest`` against every configured token, with no early
exit, so the time taken says nothing about which token (or how much of one) matched. Both sides are
SHA-256 digests first, so the comparison does not even reveal a token's length. With no token
configured every request is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.serve.responses import send_json

_SCHEME = b"bearer"


def presented_token(scope: Scope) -> bytes | None:
    """The token of the request's ``Authorization: Bearer TOKEN`` header, as sent (bytes), or None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            token = token.strip()
            if scheme.lower() == _SCHEME and token:
                return token
            return None
    return None


def digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def is_authorised(token: bytes | None, digests: Sequence[bytes]) -> bool:
    """Constant-time membership: every configured token's digest is compared, whatever matched first."""
    presented = digest(token or b"")
    matched = False
    for candidate in digests:
        matched |= hmac.compare_digest(presented, candidate)
    return token is not None and matched


class BearerAuth:
    """Let a request through only with a configured bearer token; otherwise 401 and nothing else."""

    def __init__(self, app: ASGIApp, tokens: Sequence[SecretStr]) -> None:
        self.app = app
        self._tokens = tuple(digest(t.get_secret_value().encode("utf-8")) for t in tokens)

    def __repr__(self) -> str:  # never the tokens
        return f"BearerAuth(tokens={len(self._tokens)})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_authorised(presented_token(scope), self._tokens):
            await self.app(scope, receive, send)
            return
        await send_json(send, 401, {"error": "a valid bearer token is required"},
                        headers=[(b"www-authenticate", b'Bearer realm="halo-reconciler"')])

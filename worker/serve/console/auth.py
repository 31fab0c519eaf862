"""Who is asking: server-side sessions, CSRF tokens, the sign-in throttle and trusted-proxy mode.

* A session is a row in ``console_sessions``: the cookie holds a random token, the row its SHA-256,
  the operator's name, a random CSRF token and when it expires
  (``HALO_RECONCILER_CONSOLE_SESSION_SECONDS``). Signing out deletes the row, and so do an admin's
  disabling of the operator, a password reset and ``operators remove``: the same cookie replayed
  afterwards opens nothing. The role is read from the database on every request, never the cookie.
* Every state-changing request carries the CSRF token in a form field, compared in constant time.
  The sign-in form has one too, from a short-lived signed pre-session cookie (no login CSRF).
* Failed sign-ins are counted in the database (``signin_throttle``: every ``serve`` process shares it,
  and a restart keeps it), per operator name (``HALO_RECONCILER_CONSOLE_SIGNIN_ATTEMPTS`` within the
  window) and per client address (``..._SIGNIN_ADDRESS_ATTEMPTS``, higher: behind a proxy one address
  is everyone). A key at its limit is locked for the window (the cool-down); then the right password
  gets in again. An admin lifts a name's lock at once (console, or ``operators unlock NAME``).
* Trusted-proxy mode: the operator's name comes from ``HALO_RECONCILER_CONSOLE_PROXY_HEADER``, only on
  requests whose socket peer address is in ``HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES``. The peer is the
  TCP connection's own address: ``serve`` runs uvicorn with ``proxy_headers=False``, so no header can
  rewrite it. The name must be an enabled operator (for its role). The CSRF token is then derived from
  the name with the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

from models import Operator as OperatorRow
from reconciler.adapters import people
from worker.admin import unit_of_work
from worker.config import Settings
from worker.logging import register_secret

log = structlog.get_logger()

SESSION_COOKIE = "halo_console"
PRESESSION_COOKIE = "halo_console_signin"
PRESESSION_SECONDS = 3600
SECRET_FILE = "console-secret"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    csrf: str
    via_proxy: bool = False

    @property
    def is_approver(self) -> bool:
        return self.role in ("approver", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def load_secret(settings: Settings) -> str:
    """The configured secret, or the one kept in the data directory (created 0600 on first use)."""
    if settings.console_secret is not None:
        secret = settings.console_secret.get_secret_value()
    else:
        path = Path(settings.data_dir) / SECRET_FILE
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_text().strip()
        else:
            secret = secrets.token_urlsafe(48)
            with os.fdopen(fd, "w") as out:
                out.write(secret + "\n")
            log.info("console_secret_created", path=str(path))
    register_secret(secret)
    return secret


class Sessions:
    def __init__(self, settings: Settings, secret: str) -> None:
        self.settings = settings
        self._secret = secret.encode()
        self._presession = URLSafeTimedSerializer(secret, salt="halo-console-signin")
        self._proxies = tuple(ipaddress.ip_network(p, strict=False) for p in settings.console_trusted_proxies)

    def __repr__(self) -> str:  # never the secret
        return "Sessions()"

    # --- server-side sessions (blocking: run them in a thread) ----------------------------------------
    def start(self, name: str) -> str:
        """A new session for ``name``: the cookie's token (its hash is what is stored)."""
        token = secrets.token_urlsafe(32)
        with unit_of_work() as session:
            people.create_session(session, token=token, name=name, csrf=secrets.token_urlsafe(32), now=_now(),
                                  lifetime=timedelta(seconds=self.settings.console_session_seconds))
            session.commit()
        return token

    def resolve(self, token: str) -> tuple[OperatorRow, str] | None:
        """The enabled operator and CSRF token of a live session, else None."""
        if not token or len(token) > 128:
            return None
        with unit_of_work() as session:
            found = people.session_operator(session, token=token, now=_now())
            if found is not None:
                session.expunge(found[0])
            return found

    def end(self, token: str) -> None:
        with unit_of_work() as session:
            people.end_session(session, token=token)
            session.commit()

    # --- the sign-in throttle (blocking) ---------------------------------------------------------------
    def _keys(self, name: str, address: str) -> tuple[str, str]:
        return people.name_key(name), people.address_key(address)

    def signin_wait(self, name: str, address: str) -> float:
        with unit_of_work() as session:
            return people.throttle_wait(session, keys=self._keys(name, address), now=_now())

    def signin_failed(self, name: str, address: str) -> None:
        window = timedelta(seconds=self.settings.console_signin_window_seconds)
        name_key, address_key = self._keys(name, address)
        with unit_of_work() as session:
            locked = people.throttle_failed(session, key=name_key, limit=self.settings.console_signin_attempts,
                                            window=window, now=_now())
            locked_address = people.throttle_failed(session, key=address_key, window=window, now=_now(),
                                                    limit=self.settings.console_signin_address_attempts)
            session.commit()
        if locked or locked_address:
            log.warning("console_signin_locked", operator=name[:128], client=address,
                        key="address" if locked_address else "operator")

    def signin_succeeded(self, name: str) -> None:
        with unit_of_work() as session:
            people.throttle_clear(session, key=self._keys(name, "")[0])
            session.commit()

    # --- cookies ------------------------------------------------------------------------------
    def is_secure(self, request: Request) -> bool:
        configured = self.settings.console_secure_cookies
        if configured is not None:
            return configured
        return request.url.scheme == "https" or (request.url.hostname or "") not in LOOPBACK_HOSTS

    def cookie_options(self, request: Request, max_age: int) -> dict:
        # Lax, not Strict: a link to /tickets/ID in a notification (another site) must open the
        # ticket for a signed-in person. Nothing changes on a GET, and every POST needs the CSRF token.
        return {"max_age": max_age, "httponly": True, "samesite": "lax", "secure": self.is_secure(request),
                "path": "/"}

    def session_token(self, request: Request) -> str | None:
        return request.cookies.get(SESSION_COOKIE) or None

    def new_presession(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        return token, self._presession.dumps(token)

    def presession_token(self, request: Request) -> str | None:
        raw = request.cookies.get(PRESESSION_COOKIE)
        if not raw:
            return None
        try:
            token = self._presession.loads(raw, max_age=PRESESSION_SECONDS)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None

    # --- trusted proxy ----------------------------------------------------------------------------
    def _is_trusted(self, address: str) -> bool:
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(peer in network for network in self._proxies)

    def proxied_name(self, request: Request) -> str | None:
        """The operator's name from the SSO proxy's header, only when the socket's peer is a trusted
        proxy (``request.client`` is the TCP peer: uvicorn does not rewrite it, see ``run_server``)."""
        header = self.settings.console_proxy_header
        if not header or request.client is None or not self._is_trusted(request.client.host):
            return None
        value = request.headers.get(header, "").strip()
        return value or None

    def client_address(self, request: Request) -> str:
        """Who is asking, for the throttle and the log: the socket's peer, or behind trusted proxies the
        right-most ``X-Forwarded-For`` entry that is not one of them (entries left of it are the
        client's own word, and may be forged)."""
        peer = request.client.host if request.client else "unknown"
        if not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop[:64]
        return peer

    def proxy_csrf(self, name: str) -> str:
        return hmac.new(self._secret, b"proxy-csrf:" + name.encode(), hashlib.sha256).hexdigest()


def same_token(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _now() -> datetime:
    return datetime.now(UTC)

"""Who is asking: signed session cookies, CSRF tokens, the sign-in throttle and trusted-proxy mode.

* A session is a cookie signed with the console secret (itsdangerous), holding the operator's name,
  a random CSRF token and a fingerprint of the operator's password hash: it expires after
  ``HALO_RECONCILER_CONSOLE_SESSION_SECONDS``, and a removed operator or a changed password ends it
  at the next request (the role is read from the database on every request, never from the cookie).
* Every state-changing request carries the CSRF token in a form field, compared in constant time.
  The sign-in form has one too, from a short-lived pre-session cookie (no login CSRF).
* Failed sign-ins are counted per name and per client address; past the limit the sign-in is refused
  without checking the password (this process's memory: each ``serve`` process counts its own).
* Trusted-proxy mode: the operator's name comes from ``HALO_RECONCILER_CONSOLE_PROXY_HEADER``, only on
  requests whose peer address is in ``HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES``; the name must be an
  operator (for its role). The CSRF token is then derived from the name with the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import structlog
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

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
        return self.role == "approver"


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


def password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class Throttle:
    """Failed sign-ins per key within a sliding window."""

    def __init__(self, attempts: int, window_seconds: float, clock=time.monotonic) -> None:
        self.attempts, self.window, self.clock = attempts, window_seconds, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str) -> deque[float]:
        now = self.clock()
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, *keys: str) -> float:
        """Seconds until a sign-in may be tried again under every key (0: it may now)."""
        with self._lock:
            wait = 0.0
            for key in keys:
                failures = self._recent(key)
                if len(failures) >= self.attempts:
                    wait = max(wait, failures[0] + self.window - self.clock())
            return wait

    def failed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._recent(key).append(self.clock())
            if len(self._failures) > 100_000:  # a flood of names must not grow memory without bound
                self._failures = {k: v for k, v in self._failures.items() if v}

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class Sessions:
    def __init__(self, settings: Settings, secret: str) -> None:
        self.settings = settings
        self._secret = secret.encode()
        self._session = URLSafeTimedSerializer(secret, salt="halo-console-session")
        self._presession = URLSafeTimedSerializer(secret, salt="halo-console-signin")
        self._proxies = tuple(ipaddress.ip_network(p, strict=False) for p in settings.console_trusted_proxies)
        self.throttle = Throttle(settings.console_signin_attempts, settings.console_signin_window_seconds)

    def __repr__(self) -> str:  # never the secret
        return "Sessions()"

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

    def new_session(self, name: str, password_hash: str) -> str:
        return self._session.dumps({"op": name, "csrf": secrets.token_urlsafe(32),
                                    "pw": password_fingerprint(password_hash)})

    def read_session(self, request: Request) -> dict | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            data = self._session.loads(raw, max_age=self.settings.console_session_seconds)
        except BadSignature:  # tampered, from another secret, or expired (SignatureExpired)
            return None
        return data if isinstance(data, dict) and {"op", "csrf", "pw"} <= data.keys() else None

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
    def proxied_name(self, request: Request) -> str | None:
        """The operator's name from the SSO proxy's header, only when the peer is a trusted proxy."""
        header = self.settings.console_proxy_header
        if not header or request.client is None:
            return None
        try:
            peer = ipaddress.ip_address(request.client.host)
        except ValueError:
            return None
        if not any(peer in network for network in self._proxies):
            return None
        value = request.headers.get(header, "").strip()
        return value or None

    def proxy_csrf(self, name: str) -> str:
        return hmac.new(self._secret, b"proxy-csrf:" + name.encode(), hashlib.sha256).hexdigest()


def same_token(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"

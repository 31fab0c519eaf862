"""Every way a call to Halo Cloud can fail, as types. Callers never see an ``httpx`` error.

::

    HaloError
    ├── HaloUnavailable          Halo could not answer, after the client's bounded retries
    │   ├── HaloTimeout          connect/read timeout or a dropped connection
    │   ├── HaloRateLimited      429 (``retry_after`` from Retry-After, when given)
    │   └── HaloServerError      500, 502, 503, 504 (``status``)
    ├── HaloUnauthorized         401: wrong or missing key, or the wrong environment
    ├── HaloForbidden            403 (``cause``: not_authoritative, ip_not_allowed, quota_exceeded, other)
    ├── HaloPairingRefused       Pair with a site refused the pairing (a wrong, expired or missing code)
    ├── HaloNotFound             404
    ├── HaloBadRequest           400, e.g. a PMS name spelt as responses spell it
    └── HaloBadResponse          an answer that does not parse: never acted upon

A 403 from a site we are not paired with is ``HaloForbidden(cause=other)``: neither the published
document nor error-codes.yml gives a message that tells it apart from any other GUID problem, so it
is never mistaken for the integrator-wide ``ip_not_allowed`` or ``quota_exceeded``.

Only :class:`HaloUnavailable` is worth retrying. Messages are built from Halo's error envelope and
our own words, never from request headers, so the subscription key cannot leak through them.
"""

from __future__ import annotations

from reconciler.core.vocabulary import ForbiddenCause


class HaloError(Exception):
    """Base of every Halo failure. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class HaloUnavailable(HaloError):
    """Halo did not give a usable answer in time; retry later with backoff."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class HaloTimeout(HaloUnavailable):
    pass


class HaloRateLimited(HaloUnavailable):
    pass


class HaloServerError(HaloUnavailable):
    pass


class HaloUnauthorized(HaloError):
    pass


class HaloForbidden(HaloError):
    def __init__(self, message: str, *, cause: ForbiddenCause, status: int | None = 403) -> None:
        super().__init__(message, status=status)
        self.cause = cause


class HaloPairingRefused(HaloError):
    """Halo would not pair with the site: the practice's pairing code was wrong, expired or missing.

    Not retryable, and not a GUID problem: the practice has to give a (new) code. ``status`` is the
    status Halo answered (400 or 403)."""


class HaloNotFound(HaloError):
    pass


class HaloBadRequest(HaloError):
    pass


class HaloBadResponse(HaloError):
    """The answer could not be parsed into the published schema. Nothing is ever switched on it."""


def forbidden_cause(message: str | None) -> ForbiddenCause:
    """Tell a 403's cause from Halo's error message (PRODUCT.md, "403 causes")."""
    text = (message or "").casefold()
    if "caller ip not allowed" in text:
        return ForbiddenCause.IP_NOT_ALLOWED
    if "quota" in text:
        return ForbiddenCause.QUOTA_EXCEEDED
    if "authoritative" in text:
        return ForbiddenCause.NOT_AUTHORITATIVE
    return ForbiddenCause.OTHER


INTEGRATOR_WIDE_CAUSES = (ForbiddenCause.IP_NOT_ALLOWED, ForbiddenCause.QUOTA_EXCEEDED)


def integrator_wide_cause(message: str | None) -> ForbiddenCause | None:
    """The cause when a 403 blames the integrator (its IP, its quota) rather than one site's GUID."""
    cause = forbidden_cause(message)
    return cause if cause in INTEGRATOR_WIDE_CAUSES else None

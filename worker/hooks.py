"""The application's side: report a 403 in one call that never raises and never blocks for long.

::

    from worker.hooks import report_forbidden, forbidden_event_hook
    report_forbidden(guid, message=error_message, user="...")        # returns True if taken
    httpx.Client(event_hooks={"response": [forbidden_event_hook]})  # does it by itself
    httpx.AsyncClient(event_hooks={"response": [async_forbidden_event_hook]})

A report is one Redis round trip (a Lua script) in the common case: it looks the GUID up in the
GUID index, counts it toward the 403 persistence rule, and folds it into the practice's pending
reconciliation. Only the first report of a storm publishes a Celery task; a report naming a GUID the
practice already left publishes nothing and costs no Halo call. The broad ``except`` here is one of
the two edges allowed to have one: nothing we do may raise into the integrator's application.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from reconciler.adapters.coordination.reporter import NOTHING_SENT, PublishFailed, Reporter
from reconciler.core.errors import CoordinationUnavailable
from reconciler.core.guids import InvalidGuid, parse_guid
from reconciler.core.vocabulary import ReportOutcome
from worker import reporting
from worker.config import get_settings
from worker.per_process import PerProcess

log = logging.getLogger("halo_reconciler.hooks")


def _note(level: int, event: str, **fields: Any) -> None:
    """One line: the event name and its fields (never a traceback: its locals may hold secrets)."""
    if log.isEnabledFor(level):
        log.log(level, "%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))


def _error(exc: BaseException) -> str:
    return type(exc).__name__

MAX_MESSAGE_BYTES = 4096
_SITE_PATH = re.compile(r"/integrator/sites/([0-9A-Fa-f{}-]{32,40})(?:/|$)")
HALO_HOSTS = frozenset({"api.haloconnect.io", "api.stage.haloconnect.io"})

_reporter: PerProcess[None, Reporter] = PerProcess(lambda _: reporting.reporter(bounded=True))  # rebuilt after a fork


def cut_message(message: object) -> str | None:
    """At most 4 KiB of UTF-8, cut on a character boundary."""
    if message is None:
        return None
    text = message if isinstance(message, str) else str(message)
    if len(text) <= MAX_MESSAGE_BYTES // 4:  # no character takes more than 4 bytes: nothing to cut
        return text
    data = text.encode("utf-8", errors="replace")
    if len(data) <= MAX_MESSAGE_BYTES:
        return text
    return data[:MAX_MESSAGE_BYTES].decode("utf-8", errors="ignore")


def _get_reporter() -> Reporter:
    return _reporter.get()  # every report after the first: no lock taken


def reset() -> None:
    """Forget this process's reporter (the settings changed)."""
    _reporter.reset()


def report_forbidden(guid: str, message: str | None = None, **context: Any) -> bool:
    """Report that Halo answered 403 for ``guid``. True when the report was taken.

    Never raises. A malformed GUID is refused (False); a well-formed GUID no practice has is taken
    and counted as unknown. Every wait on Redis and on the broker (connect, read, write) is bounded by
    ``HALO_RECONCILER_REPORT_TIMEOUT_SECONDS``, a publish tries twice; ``worker.publishing.hook_bound``
    adds the whole up. A Redis or broker that accepts and never answers gets False, not a hang.
    """
    outcome = report(guid, message, **context)
    return outcome is not None and outcome is not ReportOutcome.REJECTED


def report(guid: str, message: str | None = None, **context: Any) -> ReportOutcome | None:
    """``report_forbidden``, saying what the report did: ``REJECTED`` for a malformed GUID, None when
    the report was not taken. Never raises (``serve``'s waiting reports need the outcome)."""
    try:
        canonical = parse_guid(guid)
    except InvalidGuid:
        _note(logging.WARNING, "forbidden_rejected", reason="not a GUID")
        _count_rejected()
        return ReportOutcome.REJECTED
    try:
        outcome = _get_reporter().report(canonical, cut_message(message))
    except (CoordinationUnavailable, PublishFailed) as exc:
        _note(logging.WARNING, "forbidden_report_failed", guid=canonical, error=_error(exc))
        return None
    except Exception as exc:  # the hook edge: log, never raise into the application
        _note(logging.WARNING, "forbidden_report_failed", guid=canonical, error=_error(exc))
        return None
    if outcome not in NOTHING_SENT:
        # Only reports that sent something are logged: a storm's folded reports are counted in
        # Redis (``halo:reports``), and a log call per report would cost more than the report.
        _note(logging.DEBUG, "forbidden_reported", guid=canonical, outcome=outcome)
    return outcome


def _count_rejected() -> None:
    """A malformed report writes nothing but this count (one bounded call; losing it is harmless)."""
    try:
        _get_reporter().count_rejected()
    except Exception as exc:  # the hook edge: counting must not raise into the application either
        _note(logging.DEBUG, "forbidden_rejected_uncounted", error=_error(exc))


def guid_from_url(url: Any) -> str | None:
    """The site GUID in a Halo Cloud URL path, or None."""
    match = _SITE_PATH.search(str(getattr(url, "path", url)))
    if not match:
        return None
    try:
        return parse_guid(match.group(1))
    except InvalidGuid:
        return None


def _is_halo(url: Any) -> bool:
    host = getattr(url, "host", "") or ""
    if host in HALO_HOSTS:
        return True
    try:
        return host == (urlsplit(get_settings().halo_base_url).hostname or "")
    except Exception:  # configuration problems must not reach the application either
        return False


def _message(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):  # not the envelope: keep what it said, cut
        return body[:MAX_MESSAGE_BYTES].decode("utf-8", errors="replace") or None


def _reportable_guid(response: Any) -> str | None:
    """The site GUID of a 403 from Halo Cloud, or None for any other response."""
    if response.status_code != 403 or not _is_halo(response.request.url):
        return None
    return guid_from_url(response.request.url)


def forbidden_event_hook(response: Any) -> None:
    """httpx response hook (sync clients): report every 403 from a Halo Cloud site URL."""
    try:
        guid = _reportable_guid(response)
        if guid is not None:
            response.read()
            report_forbidden(guid, _message(response.content), source="httpx_hook")
    except Exception as exc:  # the hook edge
        _note(logging.WARNING, "forbidden_hook_failed", error=_error(exc))


async def async_forbidden_event_hook(response: Any) -> None:
    """httpx response hook (async clients). The report itself is a short, bounded Redis call."""
    try:
        guid = _reportable_guid(response)
        if guid is not None:
            await response.aread()
            report_forbidden(guid, _message(response.content), source="httpx_hook")
    except Exception as exc:  # the hook edge
        _note(logging.WARNING, "forbidden_hook_failed", error=_error(exc))


def current_guid(guid: str) -> str | None:
    """The GUID the application should use now for a practice it knew by ``guid`` (None if unknown)."""
    from worker import admin  # the database only for applications that ask (start-up time of the hook)

    return admin.current_guid(guid)

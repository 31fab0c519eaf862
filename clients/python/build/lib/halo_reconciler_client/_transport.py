"""``HaloTransport`` / ``AsyncHaloTransport``: httpx transports for the application's Halo Cloud client.

For a request whose path names a site (``/integrator/sites/{guid}/...``):

* a GUID this process has learned was replaced is rewritten to the current one before it is sent, and
  a request naming a GUID whose report is on its way (another request met its 403 a moment ago) waits
  for that report first (at most ``wait_seconds``), so one changeover costs this process one 403;
* a 403 that is not an IP or quota refusal is reported with a wait; when the answer names another
  GUID, a read (``GET``, ``POST`` under ``/queries/`` or ``/fhir/``) is sent once more to it and Halo's
  answer to that is returned. Any other request's 403 is returned as it was (the report still teaches
  this process the new GUID for the next request).

Nothing here raises an error of its own: a failure of ours returns Halo's answer untouched (errors
of the wrapped transport reach the application as they would without us).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading

import httpx

from halo_reconciler_client._reconciler import Reconciler, Report, canonical

_SITE = re.compile(r"(/integrator/sites/)([^/]+)(/.*)?$")
_READ_POST = re.compile(r"/integrator/sites/[^/]+/(queries|fhir)(/|$)")
MESSAGE_BYTES = 4096


def _site(path: str) -> tuple[str, str] | None:
    """``(segment as written, canonical GUID)`` of the site a Halo path names, or None."""
    match = _SITE.search(path)
    if not match:
        return None
    guid = canonical(match.group(2))
    return (match.group(2), guid) if guid else None


def _with_site(request: httpx.Request, written: str, guid: str) -> httpx.Request:
    path = request.url.path
    match = _SITE.search(path)
    assert match is not None and match.group(2) == written
    url = request.url.copy_with(path=path[:match.start(2)] + guid + path[match.end(2):])
    headers = httpx.Headers(request.headers)
    headers.pop("host", None)
    return httpx.Request(request.method, url, headers=headers, content=request.content,
                         extensions=request.extensions)


def _is_read(request: httpx.Request) -> bool:
    return request.method == "GET" or (request.method == "POST" and bool(_READ_POST.search(request.url.path)))


def _message(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["error"]["message"])[:MESSAGE_BYTES]
    except (ValueError, KeyError, TypeError):
        return body[:MESSAGE_BYTES].decode("utf-8", errors="replace") or None


def _is_integrator_wide(message: str | None) -> bool:
    """Halo blames the caller's IP or the quota: no GUID to learn, nothing to re-send."""
    text = (message or "").casefold()
    return "caller ip not allowed" in text or "quota" in text


def _replayable(request: httpx.Request) -> bool:
    try:
        request.content  # noqa: B018 - a streamed body that was not read cannot be sent again
    except httpx.RequestNotRead:
        return False
    return True


async def _wait_event(event: threading.Event, timeout: float) -> None:
    """Wait for a report another request made (a thread's or a task's), without blocking the loop."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not event.is_set() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)


class HaloTransport(httpx.BaseTransport):
    """Wraps the application's transport (default: httpx's) for its Halo Cloud client."""

    def __init__(self, reconciler: Reconciler, transport: httpx.BaseTransport | None = None, *,
                 wait_seconds: float = 2.0) -> None:
        self.reconciler = reconciler
        self.wait_seconds = wait_seconds
        self._inner = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        site = None
        try:
            site = _site(request.url.path)
            if site is not None:
                in_flight = self.reconciler.report_in_flight(site[1])
                if in_flight is not None:
                    in_flight.wait(self.wait_seconds)
                current = self.reconciler.replacement(site[1])
                if current is not None and _replayable(request):
                    request = _with_site(request, site[0], current)
                    site = (current, current)
        except Exception:  # ours: the request goes as the application wrote it
            site = None
        response = self._inner.handle_request(request)
        if response.status_code != 403 or site is None:
            return response
        try:
            response.read()
            message = _message(response.content)
            if _is_integrator_wide(message):
                self.reconciler.report_forbidden(site[1], message)
                return response
            report = self._report(site[1], message)
            if (report is None or report.current_guid is None or report.current_guid == site[1]
                    or not _is_read(request) or not _replayable(request)):
                return response
            again = _with_site(request, site[0], report.current_guid)
        except Exception:  # ours: Halo's 403, as it was
            return response
        response.close()
        return self._inner.handle_request(again)

    def _report(self, guid: str, message: str | None) -> Report | None:
        event = self.reconciler.begin_report(guid)
        try:
            return self.reconciler.report_forbidden(guid, message, wait_seconds=self.wait_seconds)
        finally:
            if event is not None:
                self.reconciler.end_report(guid, event)

    def close(self) -> None:
        self._inner.close()


class AsyncHaloTransport(httpx.AsyncBaseTransport):
    """``HaloTransport`` for ``httpx.AsyncClient``."""

    def __init__(self, reconciler: Reconciler, transport: httpx.AsyncBaseTransport | None = None, *,
                 wait_seconds: float = 2.0) -> None:
        self.reconciler = reconciler
        self.wait_seconds = wait_seconds
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        site = None
        try:
            site = _site(request.url.path)
            if site is not None:
                in_flight = self.reconciler.report_in_flight(site[1])
                if in_flight is not None:
                    await _wait_event(in_flight, self.wait_seconds)
                current = self.reconciler.replacement(site[1])
                if current is not None and _replayable(request):
                    request = _with_site(request, site[0], current)
                    site = (current, current)
        except Exception:  # ours: the request goes as the application wrote it
            site = None
        response = await self._inner.handle_async_request(request)
        if response.status_code != 403 or site is None:
            return response
        try:
            await response.aread()
            message = _message(response.content)
            if _is_integrator_wide(message):
                await self.reconciler.report_forbidden_async(site[1], message)
                return response
            event = self.reconciler.begin_report(site[1])
            try:
                report = await self.reconciler.report_forbidden_async(site[1], message, wait_seconds=self.wait_seconds)
            finally:
                if event is not None:
                    self.reconciler.end_report(site[1], event)
            if (report is None or report.current_guid is None or report.current_guid == site[1]
                    or not _is_read(request) or not _replayable(request)):
                return response
            again = _with_site(request, site[0], report.current_guid)
        except Exception:  # ours: Halo's 403, as it was
            return response
        await response.aclose()
        return await self._inner.handle_async_request(again)

    async def aclose(self) -> None:
        await self._inner.aclose()

"""``Reconciler``: the two questions of ``halo-reconciler serve``'s HTTP API, asked so that they never
raise into the application and never take longer than their bounds."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

MAX_WAIT_SECONDS = 10.0
_MAX_CHAIN = 8  # A replaced by B replaced by C...: followed this far, no further (a cycle cannot hang)


@dataclass(frozen=True)
class Report:
    """What ``POST /v1/reports`` answered.

    ``taken``: the server took the report. With a wait: ``settled`` says whether the reconciliation the
    report led to (or folded into) finished within it, ``current_guid`` is the GUID to use now (None for
    a GUID no practice has), ``action`` that reconciliation's action (``switched``, ``held``,
    ``marked_verified``...) or None. Without a wait: ``settled`` False, ``current_guid`` and ``action`` None.
    """

    taken: bool
    settled: bool
    current_guid: str | None
    action: str | None


def canonical(guid: str) -> str | None:
    """The lower-case hyphenated form of a GUID (braces, ``urn:uuid:`` and upper case accepted), or None."""
    try:
        return str(uuid.UUID(guid.strip()))
    except (ValueError, AttributeError, TypeError):
        return None


class Reconciler:
    """The application's side of ``halo-reconciler serve``.

    ``timeout`` bounds each step of a call (connect, send, read) when no wait was asked for; a report
    that waits has its wait added. Every failure (the server down, refusing the token, answering
    garbage) is ``None``, never an exception. The GUIDs this process has learned were replaced are
    remembered here, for every transport that shares this reconciler.
    """

    def __init__(self, api_url: str, token: str, *, timeout: float = 0.5,
                 transport: httpx.BaseTransport | None = None,
                 async_transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._client = httpx.Client(base_url=self.api_url, headers=self._headers, timeout=timeout,
                                    transport=transport, follow_redirects=False, trust_env=False)
        self._async_transport = async_transport
        self._replaced: dict[str, str] = {}
        self._reporting: dict[str, threading.Event] = {}  # GUIDs whose waiting report is on its way
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the token
        return f"Reconciler({self.api_url!r}, timeout={self.timeout})"

    # -- the GUIDs this process has learned were replaced ------------------------------------------
    def replacement(self, guid: str) -> str | None:
        """The GUID to use instead of ``guid``, if this process learned that ``guid`` was replaced."""
        key = canonical(guid)
        seen = 0
        current = None
        while key is not None and seen < _MAX_CHAIN:
            following = self._replaced.get(key)
            if following is None or following == key:
                break
            current = key = following
            seen += 1
        return current

    def begin_report(self, guid: str) -> threading.Event | None:
        """Note that a waiting report of ``guid`` is on its way; None when one already is."""
        key = canonical(guid)
        if key is None:
            return None
        with self._lock:
            if key in self._reporting:
                return None
            event = self._reporting[key] = threading.Event()
            return event

    def end_report(self, guid: str, event: threading.Event) -> None:
        with self._lock:
            if self._reporting.get(canonical(guid) or "") is event:
                del self._reporting[canonical(guid)]  # type: ignore[arg-type]
        event.set()

    def report_in_flight(self, guid: str) -> threading.Event | None:
        """The event a waiting report of ``guid`` sets when it is answered, if one is on its way."""
        key = canonical(guid)
        return self._reporting.get(key) if key is not None else None

    def learn(self, guid: str, current: str | None) -> None:
        old, new = canonical(guid), canonical(current) if current else None
        if old is None or new is None:
            return
        with self._lock:
            if old == new:
                self._replaced.pop(old, None)
            else:
                self._replaced[old] = new
                self._replaced.pop(new, None)  # a GUID in use is not replaced (it may have come back)

    # -- the HTTP API --------------------------------------------------------------------------------
    def report_forbidden(self, guid: str, message: str | None = None, *,
                         wait_seconds: float | None = None) -> Report | None:
        """Report that Halo answered 403 for ``guid``; with ``wait_seconds`` (0 < W <= 10), wait that
        long at most for the reconciliation that follows. None when the report was not taken."""
        body, timeout = self._report_body(guid, message, wait_seconds)
        try:
            response = self._client.post("/v1/reports", json=body, timeout=timeout)
        except Exception:  # the application's edge: nothing raises into it
            return None
        return self._report_from(guid, response)

    async def report_forbidden_async(self, guid: str, message: str | None = None, *,
                                     wait_seconds: float | None = None) -> Report | None:
        """``report_forbidden`` for asyncio applications."""
        body, timeout = self._report_body(guid, message, wait_seconds)
        try:
            async with self._async_client() as client:
                response = await client.post("/v1/reports", json=body, timeout=timeout)
        except Exception:  # the application's edge: nothing raises into it
            return None
        return self._report_from(guid, response)

    def current_guid(self, guid: str) -> str | None:
        """The GUID to use now for a practice known by ``guid`` (current or any it had); None when no
        practice has it or the server did not answer."""
        key = canonical(guid)
        if key is None:
            return None
        try:
            response = self._client.get(f"/v1/guids/{quote(key)}")
        except Exception:  # the application's edge
            return None
        return self._current_from(key, response)

    async def current_guid_async(self, guid: str) -> str | None:
        key = canonical(guid)
        if key is None:
            return None
        try:
            async with self._async_client() as client:
                response = await client.get(f"/v1/guids/{quote(key)}")
        except Exception:  # the application's edge
            return None
        return self._current_from(key, response)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Reconciler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------------------
    def _async_client(self) -> httpx.AsyncClient:
        # One per call: an asyncio application may run several loops over its life; a report is rare.
        return httpx.AsyncClient(base_url=self.api_url, headers=self._headers, timeout=self.timeout,
                                 transport=self._async_transport, follow_redirects=False, trust_env=False)

    def _report_body(self, guid: str, message: str | None,
                     wait_seconds: float | None) -> tuple[dict[str, Any], httpx.Timeout]:
        body: dict[str, Any] = {"guid": guid, "message": message}
        timeout = self.timeout
        if wait_seconds is not None:
            wait = min(max(float(wait_seconds), 0.0), MAX_WAIT_SECONDS)
            if wait > 0:
                body["wait_seconds"] = wait
                timeout += wait
        return body, httpx.Timeout(self.timeout, read=timeout)

    def _report_from(self, guid: str, response: httpx.Response) -> Report | None:
        try:
            if response.status_code == 202:
                return Report(taken=True, settled=False, current_guid=None, action=None)
            if response.status_code != 200:
                return None
            data = response.json()
            current = data.get("current_guid")
            report = Report(taken=data.get("taken") is True, settled=data.get("settled") is True,
                            current_guid=current if isinstance(current, str) else None,
                            action=data.get("action") if isinstance(data.get("action"), str) else None)
        except Exception:  # a body that is not the API's: as good as no answer
            return None
        if report.current_guid is not None:
            self.learn(guid, report.current_guid)
        return report

    def _current_from(self, guid: str, response: httpx.Response) -> str | None:
        if response.status_code != 200:
            return None
        try:
            current = response.json().get("current_guid")
        except Exception:  # not the API's answer
            return None
        if not isinstance(current, str):
            return None
        self.learn(guid, current)
        return current

"""The simulated Halo Cloud: state, faults, and ``handle`` (one request in, one response out).

``handle`` is transport-independent: the HTTP server and the in-process httpx transport both call
it. Every answer on the three Halo endpoints, errors included, follows the published OpenAPI
document (a test validates them). Sleeps for latency and timeouts happen outside the lock, so
concurrent calls overlap as they would against the real service.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx

from reconciler.core.vocabulary import Availability, PmsType, SiteStatus
from reconciler.core.guids import InvalidGuid, parse_guid
from worker.simulator.faults import Fault, FaultError
from worker.simulator.state import SiteRecord

KEY_HEADER = "ocp-apim-subscription-key"
INTEGRATOR_ID = "5f0c6a0e-2b7d-4c1e-9d8a-3b6f1e2d4c5a"
JSON = {"Content-Type": "application/json"}

Response = tuple[int, dict[str, str], bytes]


class SimulatorConfigError(ValueError):
    """A sites file or control request the simulator cannot use; the message says why."""


_STATUS_TEXT = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


def envelope(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"status": status, "statusText": _STATUS_TEXT.get(status, "Error"), "message": message}})
    return status, {**JSON, **(headers or {})}, body.encode()


def ok(document: Any, status: int = 200) -> Response:
    return status, dict(JSON), json.dumps(document).encode()


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Simulator:
    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._sites: dict[str, SiteRecord] = {}
        self._by_pms: dict[tuple[PmsType, str], list[str]] = {}
        self._faults: list[Fault] = []
        self._latency = 0.0
        self.calls: Counter = Counter()
        # Bounded: a simulator left serving for days must not grow without end.
        self.request_log: deque[tuple[float, str, str | None, int]] = deque(maxlen=1_000_000)
        self._in_flight = 0
        self.max_in_flight = 0

    # --- state -------------------------------------------------------------------------------------

    def _add(self, record: SiteRecord) -> str:
        if record.guid in self._sites:
            raise SimulatorConfigError(f"a site with GUID {record.guid} exists already")
        self._sites[record.guid] = record
        self._by_pms.setdefault((record.pms_type, record.pms_id), []).append(record.guid)
        return record.guid

    def _site(self, guid: str) -> SiteRecord:
        try:
            return self._sites[parse_guid(guid)]
        except (KeyError, InvalidGuid):
            raise SimulatorConfigError(f"no site with GUID {guid}") from None

    def _practice_sites(self, pms_type: PmsType, pms_id: str) -> list[SiteRecord]:
        return [self._sites[g] for g in self._by_pms.get((PmsType(pms_type), pms_id), [])]

    def add_site(
        self,
        pms_type: PmsType,
        pms_id: str,
        *,
        guid: str | None = None,
        status: SiteStatus = SiteStatus.ACTIVE,
        authoritative: bool | None = True,
        practice_name: str = "Halo Clinic",
        availability: Availability = Availability.ONLINE,
        query_rows: list[dict[str, Any]] | None = None,
    ) -> str:
        record = SiteRecord(
            guid=parse_guid(guid) if guid else str(uuid.uuid4()),
            pms_type=PmsType(pms_type),
            pms_id=str(pms_id),
            practice_name=practice_name,
            status=SiteStatus(status),
            availability=Availability(availability),
            authoritative=authoritative,
            query_rows=query_rows,
        )
        with self._lock:
            return self._add(record)

    def add_practice(self, *, pms_type: PmsType, pms_id: str, practice_name: str, guid: str | None = None) -> str:
        """One practice with one active, authoritative site; returns its GUID."""
        return self.add_site(pms_type, pms_id, guid=guid, practice_name=practice_name)

    def change_guid(self, pms_type: PmsType, pms_id: str, *, new_guid: str | None = None) -> str:
        """An infrastructure change: the authoritative site is removed, a new one with the same name takes over."""
        with self._lock:
            sites = self._practice_sites(pms_type, pms_id)
            if not sites:
                raise SimulatorConfigError(f"no {pms_type} practice {pms_id}")
            current = next((s for s in sites if s.authoritative and s.status is SiteStatus.ACTIVE), sites[-1])
            for site in sites:
                if site.authoritative:
                    site.authoritative = False
            current.status = SiteStatus.REMOVED
            record = SiteRecord(guid=parse_guid(new_guid) if new_guid else str(uuid.uuid4()), pms_type=current.pms_type,
                                pms_id=current.pms_id, practice_name=current.practice_name,
                                query_rows=current.query_rows, authoritative=True)
            return self._add(record)

    def rename(self, guid: str, practice_name: str) -> None:
        with self._lock:
            self._site(guid).practice_name = practice_name

    def set_authoritative(self, guid: str, authoritative: bool | None) -> None:
        with self._lock:
            site = self._site(guid)
            if authoritative:
                for other in self._practice_sites(site.pms_type, site.pms_id):
                    if other.guid != site.guid and other.authoritative:
                        other.authoritative = False
            site.authoritative = authoritative

    def set_status(self, guid: str, status: SiteStatus) -> None:
        with self._lock:
            self._site(guid).status = SiteStatus(status)

    def set_availability(self, guid: str, availability: Availability) -> None:
        with self._lock:
            self._site(guid).availability = Availability(availability)

    def set_query_rows(self, guid: str, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._site(guid).query_rows = rows

    def remove_practice(self, pms_type: PmsType, pms_id: str) -> None:
        """Every site of the practice removed: the reconciler sees ``not_found``."""
        with self._lock:
            for site in self._practice_sites(pms_type, pms_id):
                site.status = SiteStatus.REMOVED

    def split(self, pms_type: PmsType, pms_id: str, new_pms_id: str, new_name: str) -> str:
        """Part of a practice leaves with a database of its own: a new practice under a new PMS ID."""
        return self.add_site(pms_type, new_pms_id, practice_name=new_name)

    def merge(self, pms_type: PmsType, pms_id: str, into_pms_id: str) -> str:
        """A practice merges into another: its sites are removed and its PMS ID now finds the other's
        authoritative database, under the other's name (a business change for the reconciler)."""
        with self._lock:
            target = next((s for s in self._practice_sites(pms_type, into_pms_id)
                           if s.authoritative and s.status is SiteStatus.ACTIVE), None)
            if target is None:
                raise SimulatorConfigError(f"no active authoritative site for {pms_type} {into_pms_id}")
            for site in self._practice_sites(pms_type, pms_id):
                site.status, site.authoritative = SiteStatus.REMOVED, False
            record = SiteRecord(guid=str(uuid.uuid4()), pms_type=PmsType(pms_type), pms_id=pms_id,
                                practice_name=target.practice_name, authoritative=True)
            return self._add(record)

    def seed(self, n: int, *, pms_type: PmsType = PmsType.BEST_PRACTICE, start: int = 1) -> list[tuple[str, str]]:
        """``n`` generated practices, deterministic PMS IDs and names (``BP-000001``, ``Practice 000001``)."""
        prefix = {PmsType.BEST_PRACTICE: "BP", PmsType.ZEDMED: "ZM", PmsType.D4W: "D4"}[PmsType(pms_type)]
        made = []
        with self._lock:
            for i in range(start, start + n):
                record = SiteRecord(guid=str(uuid.uuid4()), pms_type=PmsType(pms_type), pms_id=f"{prefix}-{i:06d}",
                                    practice_name=f"Practice {i:06d}")
                self._add(record)
                made.append((record.pms_id, record.guid))
        return made

    def load_sites(self, document: Any) -> list[str]:
        """Load ``{"sites": [...]}`` in the shape Find sites returns; missing properties are filled in."""
        if not isinstance(document, dict) or not isinstance(document.get("sites"), list):
            raise SimulatorConfigError('expected a JSON object {"sites": [...]}')
        guids = []
        for index, site in enumerate(document["sites"]):
            if not isinstance(site, dict):
                raise SimulatorConfigError(f"sites[{index}] is not an object")
            meta = site.get("practiceMetadata") or {}
            pms_id = meta.get("practiceManagementSiteId") or site.get("practiceManagementSiteId")
            if not pms_id:
                raise SimulatorConfigError(f"sites[{index}] has no practiceManagementSiteId")
            try:
                pms_type = PmsType(meta.get("pmsType") or site.get("pmsType") or PmsType.from_query_name(
                    site.get("practiceManagementName", "Best Practice")))
                guids.append(self.add_site(
                    pms_type, str(pms_id), guid=site.get("id"),
                    status=SiteStatus(site.get("status", "active")),
                    authoritative=site.get("authoritative", True),
                    practice_name=meta.get("practiceName") or site.get("name") or f"Practice {pms_id}",
                    availability=Availability(site.get("availability", "online")),
                ))
            except (ValueError, InvalidGuid) as exc:
                raise SimulatorConfigError(f"sites[{index}]: {exc}") from None
        return guids

    def sites(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.to_json() for s in self._sites.values()]

    # --- faults and counters ------------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise SimulatorConfigError("latency must not be negative")
        self._latency = seconds

    def call_count(self, endpoint: str | None = None, key: str | None = None) -> int:
        with self._lock:
            return sum(n for (e, k), n in self.calls.items()
                       if (endpoint is None or e == endpoint) and (key is None or k == key))

    def reset_counters(self) -> None:
        with self._lock:
            self.calls.clear()
            self.request_log.clear()
            self.max_in_flight = 0

    def _take_faults(self, endpoint: str, pms_id: str | None, guid: str | None) -> list[Fault]:
        """The faults that apply to this call (consuming one of each counted fault)."""
        taken = []
        for fault in list(self._faults):
            if fault.matches(endpoint, pms_id, guid):
                taken.append(fault)
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
        return taken

    # --- requests -----------------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        """An in-process httpx transport (sync clients) answering through ``handle``."""

        def handler(request: httpx.Request) -> httpx.Response:
            status, headers, body = self.handle(request.method, request.url.path, request.url.query.decode(),
                                                request.headers, request.read())
            return httpx.Response(status, headers=headers, content=body)

        return httpx.MockTransport(handler)

    def handle(self, method: str, path: str, query: Mapping[str, Any] | str | bytes,
               headers: Mapping[str, str], body: bytes) -> Response:
        if path.startswith("/_sim/"):
            from worker.simulator.control import handle_control

            return handle_control(self, method, path, query, body)
        params = _params(query)
        route = _route(method, path)
        if route is None:
            return envelope(404, "Operation Not Found")
        endpoint, guid_text = route
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return self._serve(endpoint, guid_text, params, headers, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _serve(self, endpoint: str, guid_text: str | None, params: dict[str, str],
               headers: Mapping[str, str], body: bytes) -> Response:
        pms_id = params.get("practiceManagementSiteId") if endpoint == "find_sites" else None
        guid = None
        if guid_text is not None:
            try:
                guid = parse_guid(guid_text)
            except InvalidGuid:
                guid = None
        key = pms_id if endpoint == "find_sites" else (guid or guid_text)
        with self._lock:
            self.calls[(endpoint, key)] += 1
            faults = self._take_faults(endpoint, pms_id, guid)
        delay = self._latency + sum(f.delay or 0 for f in faults if f.kind in ("latency", "timeout"))
        if delay:
            time.sleep(delay)
        response = self._answer(endpoint, guid_text, guid, params, headers, body, faults)
        with self._lock:
            self.request_log.append((time.monotonic(), endpoint, key, response[0]))
        return response

    def _answer(self, endpoint: str, guid_text: str | None, guid: str | None, params: dict[str, str],
                headers: Mapping[str, str], body: bytes, faults: list[Fault]) -> Response:
        given = _header(headers, KEY_HEADER)
        if self.key is not None and given != self.key:
            if given is None:
                return envelope(401, "Access denied due to missing subscription key. Make sure to include "
                                     "subscription key when making requests to an API.")
            return envelope(401, "Access denied due to invalid subscription key. Make sure to provide a valid key "
                                 "for an active subscription.")
        offline = False
        for fault in faults:
            if fault.kind == "unauthorized":
                return envelope(401, "Access denied due to invalid subscription key. Make sure to provide a valid "
                                     "key for an active subscription.")
            if fault.kind == "ip_not_allowed":
                return envelope(403, "Caller Ip Not Allowed")
            if fault.kind == "quota_exceeded":
                return envelope(403, "Out of call volume quota. Quota will be replenished in 00:00:30.")
            if fault.kind == "rate_limited":
                return envelope(429, "Rate limit is exceeded. Try again in 1 seconds.",
                                {"Retry-After": str(int(fault.retry_after or 1))})
            if fault.kind == "server_error":
                return envelope(fault.status or 503, _STATUS_TEXT.get(fault.status or 503, "Error"))
            if fault.kind == "non_json":
                return 200, {"Content-Type": "text/html"}, b"<html><body>Service temporarily unavailable</body></html>"
            if fault.kind == "garbage_json":
                return ok({"sites": [{"id": "not-a-guid", "status": "sideways"}]} if endpoint == "find_sites"
                          else {"id": 42, "status": None})
            if fault.kind == "offline":
                offline = True
        if endpoint == "find_sites":
            return self._find_sites(params, offline)
        if guid is None:
            return envelope(400, "Halo GUID must be provided." if not guid_text else f"Invalid Halo GUID '{guid_text[:40]}'.")
        if endpoint == "get_site":
            with self._lock:
                site = self._sites.get(guid)
                document = site.to_json(availability=Availability.OFFLINE if offline else None) if site else None
            return ok(document) if document else envelope(404, "Site not found.")
        return self._immediate(guid, body, offline)

    def _find_sites(self, params: dict[str, str], offline: bool) -> Response:
        pms_id = params.get("practiceManagementSiteId")
        name = params.get("practiceManagementName")
        if not pms_id:
            return envelope(400, "Required parameter 'practiceManagementSiteId' is missing")
        if not name:
            return envelope(400, "Required parameter 'practiceManagementName' is missing")
        try:
            pms_type = PmsType.from_query_name(name)
        except ValueError:
            return envelope(400, f"Invalid practiceManagementName '{name[:40]}'. Allowed values: Best Practice, Zedmed, D4w")
        with self._lock:
            sites = [s.to_json(availability=Availability.OFFLINE if offline else None)
                     for s in self._practice_sites(pms_type, pms_id)]
        return ok({"sites": sites})

    def _immediate(self, guid: str, body: bytes, offline: bool) -> Response:
        try:
            request = json.loads(body or b"null")
            text = request["command"]["text"]
            if not isinstance(text, str) or not text.strip():
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return envelope(400, "Invalid request body: command.text is required.")
        with self._lock:
            site = self._sites.get(guid)
            if site is None:
                return envelope(404, "Site not found.")
            if site.status is not SiteStatus.ACTIVE or site.authoritative is False:
                return envelope(403, "Site is not authoritative for this practice.")
            if offline or site.availability is not Availability.ONLINE:
                return envelope(503, "Site could not be contacted")
            rows = site.rows()
        data = json.dumps(rows).encode()
        now = _stamp()
        return ok({
            "id": str(uuid.uuid4()),
            "integratorId": INTEGRATOR_ID,
            "siteId": guid,
            "mode": "immediate",
            "status": "successful",
            "maxTimeInQueue": int(request.get("maxTimeInQueue", 30000)) if isinstance(request, dict) else 30000,
            "commandSize": len(text.encode()),
            "requestSize": len(body),
            "createdAt": now,
            "updatedAt": now,
            "statusTiming": {"initialising": {"startTime": now}, "executing": {"startTime": now}},
            "metrics": {"sqlExecutionDuration": 3},
            "result": {"rows": len(rows), "size": len(data), "data": base64.b64encode(data).decode()},
            "resultSize": len(data),
            "completedAt": now,
        })


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _params(query: Mapping[str, Any] | str | bytes) -> dict[str, str]:
    if isinstance(query, Mapping):
        return {str(k): str(v) for k, v in query.items()}
    if isinstance(query, bytes):
        query = query.decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


def _route(method: str, path: str) -> tuple[str, str | None] | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or parts[:2] != ["integrator", "sites"]:
        return None
    if len(parts) == 2 and method == "GET":
        return "find_sites", None
    if len(parts) == 3 and method == "GET":
        return "get_site", parts[2]
    if len(parts) == 5 and parts[3:] == ["queries", "immediate"] and method == "POST":
        return "immediate_query", parts[2]
    return None


__all__ = ["Fault", "FaultError", "Simulator", "SimulatorConfigError"]

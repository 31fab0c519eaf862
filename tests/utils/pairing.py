"""Pairing over the simulator, for tests, until the simulator models pairing itself.

A colleague's branch teaches ``worker.simulator`` pairing; until it lands, :class:`PairingSimulator`
adds what these tests need on top of it: sites listed in ``unpaired`` answer Get site status and
queries with 403 in Halo's error envelope; ``POST /integrator/pair-site`` pairs the practice's
authoritative site (a Best Practice one only with its code in ``codes``) and answers with the site;
``requests`` records every answer, so a test can ask whether a GUID was checked before a switch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from worker.simulator import Simulator

Response = tuple[int, dict[str, str], bytes]


def _envelope(status: int, message: str) -> Response:
    text = {400: "Bad Request", 403: "Forbidden"}.get(status, "Error")
    return status, {"Content-Type": "application/json"}, json.dumps(
        {"error": {"status": status, "statusText": text, "message": message}}).encode()


def _params(query: Mapping[str, Any] | str | bytes) -> dict[str, str]:
    if isinstance(query, Mapping):
        return {str(k): str(v) for k, v in query.items()}
    if isinstance(query, bytes):
        query = query.decode()
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


def _site_status(response: Response) -> str | None:
    try:
        document = json.loads(response[2])
        return document.get("status") if response[0] == 200 and isinstance(document, dict) else None
    except ValueError:
        return None


class PairingSimulator(Simulator):
    def __init__(self, key: str | None = None) -> None:
        super().__init__(key=key)
        self.unpaired: set[str] = set()
        self.codes: dict[str, str] = {}
        # (endpoint, GUID or PMS ID, HTTP status, the site's status when the answer is a site)
        self.requests: list[tuple[str, str | None, int, str | None]] = []

    def handle(self, method: str, path: str, query: Mapping[str, Any] | str | bytes,
               headers: Mapping[str, str], body: bytes) -> Response:
        if path.startswith("/_sim/"):
            return super().handle(method, path, query, headers, body)
        parts = [p for p in path.split("/") if p]
        if method == "POST" and parts == ["integrator", "pair-site"]:
            response = self._pair(_params(query), headers)
            self.requests.append(("pair_site", _params(query).get("practiceManagementSiteId"), response[0],
                                  _site_status(response)))
            return response
        guid = parts[2] if len(parts) >= 3 and parts[:2] == ["integrator", "sites"] else None
        endpoint = "find_sites" if guid is None else ("get_site" if len(parts) == 3 else "immediate_query")
        if guid is not None and guid in self.unpaired:
            response = _envelope(403, "The integrator is not paired with this site.")
        else:
            response = super().handle(method, path, query, headers, body)
        self.requests.append((endpoint, guid or _params(query).get("practiceManagementSiteId"), response[0],
                              _site_status(response) if endpoint == "get_site" else None))
        return response

    def _pair(self, params: dict[str, str], headers: Mapping[str, str]) -> Response:
        status, _, body = super().handle("GET", "/integrator/sites", {
            "practiceManagementSiteId": params.get("practiceManagementSiteId", ""),
            "practiceManagementName": params.get("practiceManagementName", ""),
        }, headers, b"")
        if status != 200:
            return status, {"Content-Type": "application/json"}, body
        sites = [s for s in json.loads(body)["sites"]
                 if s["status"] in ("active", "initialising") and s.get("authoritative") is not False]
        if len(sites) != 1:
            return _envelope(400, "No single site to pair with.")
        site = sites[0]
        if params.get("practiceManagementName") == "Best Practice":
            code = params.get("pairingCode")
            if code is None:
                return _envelope(400, "A pairingCode is required to pair with Best Practice sites.")
            if self.codes.get(site["id"]) != code:
                return _envelope(403, "Invalid pairing code.")
        self.unpaired.discard(site["id"])
        return 200, {"Content-Type": "application/json"}, json.dumps(site).encode()

    def checked_active(self, guid: str, since: int = 0) -> bool:
        """Whether Get site status answered ``active`` on ``guid`` among the requests from ``since``."""
        return any(e == "get_site" and g == guid and http == 200 and site == "active"
                   for e, g, http, site in self.requests[since:])

    def pairings(self) -> int:
        return sum(1 for e, *_ in self.requests if e == "pair_site")

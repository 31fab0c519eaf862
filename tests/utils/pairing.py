"""The real simulator, with every Halo answer recorded beside the site status it carried.

``worker.simulator`` models pairing itself (``unpair``, ``set_pairing_code``, ``is_paired``,
``POST /integrator/pair-site``); its request log keeps endpoint and HTTP status only. A test that
must show a switch was verified first (Get site status answered ``active`` on that GUID) reads
``requests`` here instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

from worker.simulator import Simulator

Response = tuple[int, dict[str, str], bytes]


def _params(query: Mapping[str, Any] | str | bytes) -> dict[str, str]:
    if isinstance(query, bytes):
        query = query.decode()
    if isinstance(query, str):
        return {k: v[-1] for k, v in parse_qs(query).items()}
    return {str(k): str(v) for k, v in query.items()}


def _site_status(response: Response) -> str | None:
    try:
        return str(json.loads(response[2])["status"])
    except (ValueError, KeyError, TypeError):
        return None


class RecordingSimulator(Simulator):
    def __init__(self, key: str | None = None) -> None:
        super().__init__(key=key)
        # (endpoint, GUID or PMS ID, HTTP status, the site's status when the answer is a site)
        self.requests: list[tuple[str, str | None, int, str | None]] = []

    def handle(self, method: str, path: str, query: Mapping[str, Any] | str | bytes,
               headers: Mapping[str, str], body: bytes) -> Response:
        response = super().handle(method, path, query, headers, body)
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["integrator"]:
            if parts[1:] in (["pair-site"], ["pairSite"]):
                endpoint, key = "pair_site", _params(query).get("practiceManagementSiteId")
            elif len(parts) >= 3 and parts[1] == "sites":
                endpoint, key = ("get_site" if len(parts) == 3 else "immediate_query"), parts[2]
            else:
                endpoint, key = "find_sites", _params(query).get("practiceManagementSiteId")
            self.requests.append((endpoint, key, response[0],
                                  _site_status(response) if endpoint in ("get_site", "pair_site") else None))
        return response

    def checked_active(self, guid: str, since: int = 0) -> bool:
        """Whether Get site status answered ``active`` on ``guid`` among the requests from ``since``."""
        return any(e == "get_site" and g == guid and http == 200 and site == "active"
                   for e, g, http, site in self.requests[since:])

    def pairings(self) -> int:
        """Pair-with-a-site calls Halo received, refused ones included (the simulator's own count)."""
        return self.call_count("pair_site")


@contextmanager
def recording_simulator(monkeypatch, key: str) -> Iterator[RecordingSimulator]:
    """A recording simulator served on loopback, and this process's settings pointed at it."""
    # The settings module only here: test modules that import this file for the class alone stay light.
    from worker.config import get_settings
    from worker.simulator import serve

    simulator = RecordingSimulator(key=key)
    with serve(simulator, host="127.0.0.1", port=0) as server:
        monkeypatch.setenv("HALO_BASE_URL", server.url)
        monkeypatch.setenv("HALO_SUBSCRIPTION_KEY", key)
        monkeypatch.setenv("HALO_RECONCILER_HALO_BACKOFF_BASE_SECONDS", "0")
        get_settings.cache_clear()
        yield simulator

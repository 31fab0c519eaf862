"""Faults the simulator can inject, matched per endpoint, PMS ID or GUID, for N calls or forever."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KINDS = frozenset({
    "ip_not_allowed",   # 403 "Caller Ip Not Allowed"
    "quota_exceeded",   # 403 with a quota message
    "unauthorized",     # 401 as for an invalid key
    "rate_limited",     # 429 with Retry-After
    "server_error",     # 500/502/503/504 (``status``, default 503)
    "non_json",         # 200 with an HTML body
    "garbage_json",     # 200 JSON that does not match the schema
    "latency",          # answer normally after ``delay`` seconds
    "timeout",          # answer normally after ``delay`` seconds (longer than the client waits)
    "offline",          # sites report availability offline; immediate queries get 503
})
ENDPOINTS = frozenset({"find_sites", "get_site", "pair_site", "immediate_query"})


class FaultError(ValueError):
    pass


@dataclass
class Fault:
    kind: str
    endpoint: str | None = None
    pms_id: str | None = None
    guid: str | None = None
    times: int | None = None  # None: until cleared
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultError(f"unknown fault kind {self.kind!r}; one of {', '.join(sorted(KINDS))}")
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            raise FaultError(f"unknown endpoint {self.endpoint!r}; one of {', '.join(sorted(ENDPOINTS))}")
        if self.kind == "server_error" and self.status is None:
            self.status = 503
        if self.kind == "server_error" and self.status not in (500, 502, 503, 504):
            raise FaultError("server_error status must be 500, 502, 503 or 504")
        if self.kind == "rate_limited" and self.retry_after is None:
            self.retry_after = 1
        if self.kind in ("latency", "timeout") and self.delay is None:
            self.delay = 0.1 if self.kind == "latency" else 30.0
        if self.times is not None and self.times < 1:
            raise FaultError("times must be at least 1 (or omitted for forever)")

    def matches(self, endpoint: str, pms_id: str | None, guid: str | None) -> bool:
        return (
            (self.endpoint is None or self.endpoint == endpoint)
            and (self.pms_id is None or self.pms_id == pms_id)
            and (self.guid is None or self.guid == guid)
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

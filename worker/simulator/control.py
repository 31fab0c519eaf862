"""The simulator's control API: ``/_sim/...`` over HTTP, and a small client for other processes.

The control API takes no subscription key: the simulator binds loopback by default and exists to
be driven by tests, the demo and benchmarks on the same machine.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

from reconciler.core.vocabulary import Availability, PmsType, SiteStatus
from worker.simulator.faults import Fault, FaultError

if TYPE_CHECKING:
    from worker.simulator.app import Response, Simulator


def handle_control(sim: "Simulator", method: str, path: str, query: Any, body: bytes) -> "Response":
    from worker.simulator.app import SimulatorConfigError, envelope, ok

    try:
        data = json.loads(body) if body else {}
        if not isinstance(data, dict):
            raise SimulatorConfigError("the body must be a JSON object")
        action = path[len("/_sim/"):].strip("/")
        if (method, action) == ("GET", "calls"):
            calls = [{"endpoint": e, "key": k, "count": n} for (e, k), n in sorted(sim.calls.items(), key=str)]
            return ok({"total": sim.call_count(), "find_sites": sim.call_count("find_sites"), "calls": calls})
        if (method, action) == ("GET", "rate"):
            # Calls served per whole second since the counters were reset, per endpoint.
            per_second: dict[str, dict[int, int]] = {}
            log = list(sim.request_log)
            start = log[0][0] if log else 0.0
            for moment, endpoint, _key, _status in log:
                bucket = per_second.setdefault(endpoint, {})
                second = int(moment - start)
                bucket[second] = bucket.get(second, 0) + 1
            return ok({endpoint: [counts.get(i, 0) for i in range(max(counts) + 1)]
                       for endpoint, counts in per_second.items()})
        if (method, action) == ("GET", "sites"):
            return ok({"sites": sim.sites()})
        if (method, action) == ("POST", "practices"):
            guid = sim.add_practice(pms_type=PmsType(data["pms_type"]), pms_id=str(data["pms_id"]),
                                    practice_name=str(data["practice_name"]), guid=data.get("guid"))
            return ok({"guid": guid})
        if (method, action) == ("POST", "sites"):
            guid = sim.add_site(PmsType(data["pms_type"]), str(data["pms_id"]), guid=data.get("guid"),
                                status=SiteStatus(data.get("status", "active")),
                                authoritative=data.get("authoritative", True),
                                practice_name=str(data.get("practice_name", "Halo Clinic")),
                                availability=Availability(data.get("availability", "online")))
            return ok({"guid": guid})
        if (method, action) == ("POST", "change-guid"):
            return ok({"guid": sim.change_guid(PmsType(data["pms_type"]), str(data["pms_id"]))})
        if (method, action) == ("POST", "rename"):
            sim.rename(data["guid"], str(data["practice_name"]))
            return ok({})
        if (method, action) == ("POST", "authoritative"):
            sim.set_authoritative(data["guid"], data.get("authoritative"))
            return ok({})
        if (method, action) == ("POST", "status"):
            sim.set_status(data["guid"], SiteStatus(data["status"]))
            return ok({})
        if (method, action) == ("POST", "availability"):
            sim.set_availability(data["guid"], Availability(data["availability"]))
            return ok({})
        if (method, action) == ("POST", "remove"):
            sim.remove_practice(PmsType(data["pms_type"]), str(data["pms_id"]))
            return ok({})
        if (method, action) == ("POST", "merge"):
            return ok({"guid": sim.merge(PmsType(data["pms_type"]), str(data["pms_id"]), str(data["into_pms_id"]))})
        if (method, action) == ("POST", "faults"):
            sim.inject(Fault(**data))
            return ok({})
        if (method, action) == ("DELETE", "faults"):
            sim.clear_faults()
            return ok({})
        if (method, action) == ("POST", "latency"):
            sim.set_latency(float(data["seconds"]))
            return ok({})
        if (method, action) == ("POST", "reset-counters"):
            sim.reset_counters()
            return ok({})
        if (method, action) == ("POST", "seed"):
            made = sim.seed(int(data["n"]), pms_type=PmsType(data.get("pms_type", "BestPractice")),
                            start=int(data.get("start", 1)))
            return ok({"practices": made})
        return envelope(404, f"no control operation {method} /_sim/{action}")
    except (KeyError, TypeError) as exc:
        return envelope(400, f"missing or bad field: {exc}")
    except (ValueError, FaultError) as exc:  # SimulatorConfigError is a ValueError
        return envelope(400, str(exc))


class SimulatorControl:
    """Drive a running simulator from another process (the demo, benchmarks, integration tests)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def _call(self, method: str, action: str, **data: Any) -> dict[str, Any]:
        response = self._http.request(method, f"/_sim/{action}", json=data or None)
        if response.status_code != 200:
            raise RuntimeError(f"simulator {action}: {response.status_code} {response.text[:200]}")
        return response.json()

    def add_practice(self, *, pms_type: str, pms_id: str, practice_name: str) -> str:
        return self._call("POST", "practices", pms_type=str(pms_type), pms_id=pms_id, practice_name=practice_name)["guid"]

    def add_site(self, pms_type: str, pms_id: str, **fields: Any) -> str:
        return self._call("POST", "sites", pms_type=str(pms_type), pms_id=pms_id, **fields)["guid"]

    def change_guid(self, pms_type: str, pms_id: str) -> str:
        return self._call("POST", "change-guid", pms_type=str(pms_type), pms_id=pms_id)["guid"]

    def rename(self, guid: str, practice_name: str) -> None:
        self._call("POST", "rename", guid=guid, practice_name=practice_name)

    def set_authoritative(self, guid: str, authoritative: bool | None) -> None:
        self._call("POST", "authoritative", guid=guid, authoritative=authoritative)

    def set_status(self, guid: str, status: str) -> None:
        self._call("POST", "status", guid=guid, status=str(status))

    def remove_practice(self, pms_type: str, pms_id: str) -> None:
        self._call("POST", "remove", pms_type=str(pms_type), pms_id=pms_id)

    def inject(self, kind: str, **fields: Any) -> None:
        self._call("POST", "faults", kind=kind, **fields)

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def set_latency(self, seconds: float) -> None:
        self._call("POST", "latency", seconds=seconds)

    def seed(self, n: int, *, pms_type: str = "BestPractice", start: int = 1) -> list[tuple[str, str]]:
        return [tuple(p) for p in self._call("POST", "seed", n=n, pms_type=str(pms_type), start=start)["practices"]]

    def calls(self) -> dict[str, Any]:
        return self._call("GET", "calls")

    def call_count(self, endpoint: str | None = None) -> int:
        document = self.calls()
        if endpoint is None:
            return document["total"]
        return sum(c["count"] for c in document["calls"] if c["endpoint"] == endpoint)

    def reset_counters(self) -> None:
        self._call("POST", "reset-counters")

    def rate(self) -> dict[str, list[int]]:
        """Calls served in each whole second since the last reset, per endpoint."""
        return self._call("GET", "rate")

    def close(self) -> None:
        self._http.close()

"""The simulator's control API (``/_sim/...``), and a small client for other processes.

Each operation below is registered with its method and path; ``worker.simulator.routes`` serves
them beside the Halo endpoints. With ``--key`` the control API asks for the same key as Halo's
endpoints (``Ocp-Apim-Subscription-Key``) and answers 401 without it; without ``--key`` it is
open, like the rest of the simulator, which binds loopback by default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from reconciler.core.vocabulary import Availability, PmsType, SiteStatus
from worker.simulator.faults import Fault, FaultError

from worker.simulator.app import Call, Response, SimulatorConfigError, SimulatorState, envelope, ok

PREFIX = "/_sim"


@dataclass(frozen=True)
class ControlOperation:
    method: str
    path: str  # under PREFIX, Starlette's path syntax
    run: Callable[[SimulatorState, dict[str, Any], Call], Any]


OPERATIONS: list[ControlOperation] = []


def _operation(method: str, path: str):
    def register(run):
        OPERATIONS.append(ControlOperation(method, path, run))
        return run

    return register


def run_control(sim: SimulatorState, operation: ControlOperation, call: Call) -> Response:
    """One control operation: the body parsed, the answer (a dict) as JSON, bad input as 400."""
    try:
        data = json.loads(call.body) if call.body else {}
        if not isinstance(data, dict):
            raise SimulatorConfigError("the body must be a JSON object")
        result = operation.run(sim, data, call)
        return ok(result if result is not None else {})
    except json.JSONDecodeError as exc:
        return envelope(400, f"the body is not JSON ({exc.msg})")
    except (KeyError, TypeError) as exc:
        return envelope(400, f"missing or bad field: {exc}")
    except (ValueError, FaultError) as exc:  # SimulatorConfigError is a ValueError
        return envelope(400, str(exc))


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise TypeError(f"{name!r} must be true or false")
    return value


# --- reading ---------------------------------------------------------------------------------------


@_operation("GET", "/calls")
def _calls(sim: SimulatorState, data: dict, call: Call) -> dict:
    counted = sim.counted()
    calls = [{"endpoint": e, "key": k, "count": n} for (e, k), n in sorted(counted, key=str)]
    return {"total": sum(n for _, n in counted), "find_sites": sum(n for (e, _), n in counted if e == "find_sites"),
            "calls": calls}


@_operation("GET", "/rate")
def _rate(sim: SimulatorState, data: dict, call: Call) -> dict:
    """Calls served per whole second since the counters were reset, per endpoint."""
    per_second: dict[str, dict[int, int]] = {}
    log = sim.logged()
    start = log[0][0] if log else 0.0
    for moment, endpoint, _key, _status in log:
        bucket = per_second.setdefault(endpoint, {})
        second = int(moment - start)
        bucket[second] = bucket.get(second, 0) + 1
    return {endpoint: [counts.get(i, 0) for i in range(max(counts) + 1)] for endpoint, counts in per_second.items()}


@_operation("GET", "/requests")
def _requests(sim: SimulatorState, data: dict, call: Call) -> dict:
    """The request log, oldest first: ``{at, endpoint, key, status}`` (``at`` in monotonic seconds)."""
    limit = int(call.params.get("limit", 10_000))
    log = sim.logged()[-limit:] if limit > 0 else []
    return {"requests": [{"at": at, "endpoint": e, "key": k, "status": s} for at, e, k, s in log]}


@_operation("GET", "/sites")
def _sites(sim: SimulatorState, data: dict, call: Call) -> dict:
    return {"sites": sim.sites()}


@_operation("GET", "/sites/{guid}")
def _site(sim: SimulatorState, data: dict, call: Call) -> dict:
    return sim.site(call.path_params["guid"])


# --- practices and sites ---------------------------------------------------------------------------


def _pairing(data: dict[str, Any]) -> dict[str, Any]:
    code = data.get("pairing_code")
    if code is not None and not isinstance(code, str):
        raise TypeError("'pairing_code' must be a string")
    return {"paired": _flag(data, "paired", True), "pairing_code": code}


@_operation("POST", "/practices")
def _add_practice(sim: SimulatorState, data: dict, call: Call) -> dict:
    guid = sim.add_practice(pms_type=PmsType(data["pms_type"]), pms_id=str(data["pms_id"]),
                            practice_name=str(data["practice_name"]), guid=data.get("guid"), **_pairing(data))
    return {"guid": guid}


@_operation("POST", "/sites")
def _add_site(sim: SimulatorState, data: dict, call: Call) -> dict:
    guid = sim.add_site(PmsType(data["pms_type"]), str(data["pms_id"]), guid=data.get("guid"),
                        status=SiteStatus(data.get("status", "active")),
                        authoritative=data.get("authoritative", True),
                        practice_name=str(data.get("practice_name", "Halo Clinic")),
                        availability=Availability(data.get("availability", "online")), **_pairing(data))
    return {"guid": guid}


@_operation("POST", "/change-guid")
def _change_guid(sim: SimulatorState, data: dict, call: Call) -> dict:
    return {"guid": sim.change_guid(PmsType(data["pms_type"]), str(data["pms_id"]), new_guid=data.get("new_guid"),
                                    status=SiteStatus(data.get("status", "active")), **_pairing(data))}


@_operation("POST", "/rename")
def _rename(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.rename(data["guid"], str(data["practice_name"]))


@_operation("POST", "/authoritative")
def _authoritative(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.set_authoritative(data["guid"], data.get("authoritative"))


@_operation("POST", "/status")
def _status(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.set_status(data["guid"], SiteStatus(data["status"]))


@_operation("POST", "/initialising")
def _initialising(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.set_initialising(data["guid"])


@_operation("POST", "/activate")
def _activate(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.activate(data["guid"])


@_operation("POST", "/availability")
def _availability(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.set_availability(data["guid"], Availability(data["availability"]))


@_operation("POST", "/site-properties")
def _site_properties(sim: SimulatorState, data: dict, call: Call) -> dict:
    if _flag(data, "clear", False):
        sim.clear_site_properties(data["guid"])
    sim.set_site_properties(data["guid"], data.get("properties") or {})
    return sim.site(data["guid"])


@_operation("POST", "/remove")
def _remove(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.remove_practice(PmsType(data["pms_type"]), str(data["pms_id"]))


@_operation("POST", "/merge")
def _merge(sim: SimulatorState, data: dict, call: Call) -> dict:
    return {"guid": sim.merge(PmsType(data["pms_type"]), str(data["pms_id"]), str(data["into_pms_id"]),
                              paired=_flag(data, "paired", True))}


@_operation("POST", "/seed")
def _seed(sim: SimulatorState, data: dict, call: Call) -> dict:
    made = sim.seed(int(data["n"]), pms_type=PmsType(data.get("pms_type", "BestPractice")),
                    start=int(data.get("start", 1)))
    return {"practices": made}


# --- pairing ---------------------------------------------------------------------------------------


@_operation("POST", "/unpair")
def _unpair(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.unpair(data["guid"])


@_operation("POST", "/pair")
def _pair(sim: SimulatorState, data: dict, call: Call) -> None:
    """Paired without the Halo call (as if an earlier integration had paired it)."""
    sim.set_paired(data["guid"], True)


@_operation("POST", "/pairing-code")
def _pairing_code(sim: SimulatorState, data: dict, call: Call) -> dict:
    code = data["code"]
    if code is not None and not isinstance(code, str):
        raise TypeError("'code' must be a string or null")
    sim.set_pairing_code(data["guid"], code)
    return {"pairing_code": sim.pairing_code(data["guid"])}


# --- faults and counters ---------------------------------------------------------------------------


@_operation("POST", "/faults")
def _inject(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.inject(Fault(**data))


@_operation("DELETE", "/faults")
def _clear_faults(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.clear_faults()


@_operation("POST", "/latency")
def _latency(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.set_latency(float(data["seconds"]))


@_operation("POST", "/reset-counters")
def _reset_counters(sim: SimulatorState, data: dict, call: Call) -> None:
    sim.reset_counters()


# --- the client ------------------------------------------------------------------------------------


class SimulatorControl:
    """Drive a running simulator from another process (the demo, benchmarks, integration tests).

    ``key`` is the simulator's ``--key``; when not given it is taken from ``HALO_SIMULATOR_KEY``
    (the variable ``halo-reconciler simulator`` reads its ``--key`` from), then from
    ``HALO_SUBSCRIPTION_KEY`` (the key the integrator's processes send to the simulator).
    """

    def __init__(self, base_url: str, timeout: float = 30.0, *, key: str | None = None) -> None:
        if key is None:
            key = os.environ.get("HALO_SIMULATOR_KEY") or os.environ.get("HALO_SUBSCRIPTION_KEY") or None
        headers = {"Ocp-Apim-Subscription-Key": key} if key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers)

    def _call(self, method: str, action: str, params: dict[str, Any] | None = None, **data: Any) -> dict[str, Any]:
        response = self._http.request(method, f"{PREFIX}/{action}", json=data or None, params=params)
        if response.status_code != 200:
            raise RuntimeError(f"simulator {action}: {response.status_code} {response.text[:200]}")
        return response.json()

    @staticmethod
    def _optional(**fields: Any) -> dict[str, Any]:
        return {k: v for k, v in fields.items() if v is not None}

    def add_practice(self, *, pms_type: str, pms_id: str, practice_name: str, paired: bool = True,
                     pairing_code: str | None = None, guid: str | None = None) -> str:
        return self._call("POST", "practices", pms_type=str(pms_type), pms_id=pms_id, practice_name=practice_name,
                          paired=paired, **self._optional(pairing_code=pairing_code, guid=guid))["guid"]

    def add_site(self, pms_type: str, pms_id: str, **fields: Any) -> str:
        """Fields as ``Simulator.add_site`` takes them (``status``, ``authoritative``, ``practice_name``,
        ``availability``, ``guid``, ``paired``, ``pairing_code``)."""
        return self._call("POST", "sites", pms_type=str(pms_type), pms_id=pms_id, **fields)["guid"]

    def change_guid(self, pms_type: str, pms_id: str, *, paired: bool = True, status: str = "active",
                    pairing_code: str | None = None, new_guid: str | None = None) -> str:
        return self._call("POST", "change-guid", pms_type=str(pms_type), pms_id=pms_id, paired=paired,
                          status=str(status), **self._optional(pairing_code=pairing_code, new_guid=new_guid))["guid"]

    def rename(self, guid: str, practice_name: str) -> None:
        self._call("POST", "rename", guid=guid, practice_name=practice_name)

    def set_authoritative(self, guid: str, authoritative: bool | None) -> None:
        self._call("POST", "authoritative", guid=guid, authoritative=authoritative)

    def set_status(self, guid: str, status: str) -> None:
        self._call("POST", "status", guid=guid, status=str(status))

    def set_initialising(self, guid: str) -> None:
        self._call("POST", "initialising", guid=guid)

    def activate(self, guid: str) -> None:
        self._call("POST", "activate", guid=guid)

    def set_availability(self, guid: str, availability: str) -> None:
        self._call("POST", "availability", guid=guid, availability=str(availability))

    def set_site_properties(self, guid: str, properties: dict[str, Any], *, clear: bool = False) -> dict[str, Any]:
        """Serve these site properties as given (odd values for lenient-parsing tests; None drops one)."""
        return self._call("POST", "site-properties", guid=guid, properties=properties, clear=clear)

    def clear_site_properties(self, guid: str) -> None:
        self._call("POST", "site-properties", guid=guid, properties={}, clear=True)

    def remove_practice(self, pms_type: str, pms_id: str) -> None:
        self._call("POST", "remove", pms_type=str(pms_type), pms_id=pms_id)

    def merge(self, pms_type: str, pms_id: str, into_pms_id: str, *, paired: bool = True) -> str:
        return self._call("POST", "merge", pms_type=str(pms_type), pms_id=pms_id, into_pms_id=into_pms_id,
                          paired=paired)["guid"]

    def unpair(self, guid: str) -> None:
        self._call("POST", "unpair", guid=guid)

    def pair(self, guid: str) -> None:
        """Mark the site paired without a Halo call."""
        self._call("POST", "pair", guid=guid)

    def set_pairing_code(self, guid: str, code: str | None) -> None:
        self._call("POST", "pairing-code", guid=guid, code=code)

    def site(self, guid: str) -> dict[str, Any]:
        """What the simulator holds about a site: ``paired``, ``pairing_code``, ``status``, ``overrides``..."""
        return self._call("GET", f"sites/{guid}")

    def pairing_code(self, guid: str) -> str | None:
        return self.site(guid)["pairing_code"]

    def is_paired(self, guid: str) -> bool:
        return self.site(guid)["paired"]

    def sites(self) -> list[dict[str, Any]]:
        return self._call("GET", "sites")["sites"]

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

    def requests(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """The last ``limit`` calls served, oldest first: ``{at, endpoint, key, status}``."""
        return self._call("GET", "requests", params={"limit": limit})["requests"]

    def reset_counters(self) -> None:
        self._call("POST", "reset-counters")

    def rate(self) -> dict[str, list[int]]:
        """Calls served in each whole second since the last reset, per endpoint."""
        return self._call("GET", "rate")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "SimulatorControl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

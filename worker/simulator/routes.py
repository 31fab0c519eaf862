"""The simulator's HTTP routing: one Starlette app for Halo's endpoints and the control API.

``create_app(sim)`` is the ASGI app (uvicorn serves it on loopback; tests drive it in process with
``starlette.testclient.TestClient`` or ``httpx.ASGITransport``). ``dispatch`` answers one request
synchronously through the same routing table, for ``Simulator.handle`` and the sync httpx
transport. Every call the routing does not know gets 404 in Halo's error envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response as HttpResponse
from starlette.routing import Match, Route

import httpx

from worker.simulator.app import KEY_HEADER, Call, Response, SimulatorState, envelope, header, params_of
from worker.simulator.control import OPERATIONS, PREFIX, ControlOperation, run_control

MAX_BODY = 1024 * 1024

# Halo's endpoints as the published document names their paths; the name is what calls are counted
# under (and what a fault's ``endpoint`` matches).
HALO_ENDPOINTS = [
    ("GET", "/integrator/sites", "find_sites"),
    ("GET", "/integrator/sites/{siteId}", "get_site"),
    ("POST", "/integrator/pair-site", "pair_site"),
    ("POST", "/integrator/pairSite", "pair_site"),  # the deprecated spelling the document still lists
    ("POST", "/integrator/sites/{siteId}/queries/immediate", "immediate_query"),
]


class _HaloRoute(Route):
    """A Halo endpoint; ``sync`` answers a matched call without an event loop."""

    def __init__(self, sim: SimulatorState, method: str, path: str, endpoint_name: str) -> None:
        self.endpoint_name = endpoint_name
        self._sim = sim

        async def endpoint(request: Request) -> HttpResponse:
            call = await _call_of(request)
            if isinstance(call, tuple):
                return _http(call)
            ticket = sim.begin(endpoint_name, call)
            response = None
            try:
                if ticket.delay:
                    await anyio.sleep(ticket.delay)
                response = sim.answer(ticket, call)
            finally:
                sim.end(ticket, response[0] if response else None)
            return _http(response)

        super().__init__(path, endpoint, methods=[method], name=endpoint_name)

    def sync(self, call: Call) -> Response:
        return self._sim.serve(self.endpoint_name, call)


class _ControlRoute(Route):
    def __init__(self, sim: SimulatorState, operation: ControlOperation) -> None:
        self.operation = operation
        self._sim = sim

        async def endpoint(request: Request) -> HttpResponse:
            refused = sim.refuses_key(request.headers.get(KEY_HEADER))
            if refused:
                return _http(refused)
            call = await _call_of(request)
            if isinstance(call, tuple):
                return _http(call)
            return _http(await run_in_threadpool(run_control, sim, operation, call))

        super().__init__(PREFIX + operation.path, endpoint, methods=[operation.method])

    def sync(self, call: Call) -> Response:
        refused = self._sim.refuses_key(header(call.headers, KEY_HEADER))
        return refused or run_control(self._sim, self.operation, call)


async def _call_of(request: Request) -> Call | Response:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        return envelope(413, "Request body too large.")
    body = await request.body()
    if len(body) > MAX_BODY:
        return envelope(413, "Request body too large.")
    return Call(request.method, request.path_params, params_of(request.scope.get("query_string", b"")),
                request.headers, body)


def _http(response: Response) -> HttpResponse:
    status, headers, payload = response
    return HttpResponse(content=payload, status_code=status, headers=headers)


def not_found(method: str, path: str) -> Response:
    if path == PREFIX or path.startswith(PREFIX + "/"):
        return envelope(404, f"no control operation {method} {path}")
    return envelope(404, "Operation Not Found")


async def _unknown(request: Request, exc: Exception) -> HttpResponse:
    """404 and 405 (a known path, another method) both answer as Halo does: 404, its envelope."""
    status = getattr(exc, "status_code", 500)
    if status in (404, 405):
        return _http(not_found(request.method, request.url.path))
    return _http(envelope(status, str(getattr(exc, "detail", "")) or "Error"))


def routes_for(sim: SimulatorState) -> list[Route]:
    return ([_HaloRoute(sim, method, path, name) for method, path, name in HALO_ENDPOINTS]
            + [_ControlRoute(sim, operation) for operation in OPERATIONS])


def create_app(sim: SimulatorState) -> Starlette:
    """The ASGI app serving ``sim``: Halo's endpoints and the control API under ``/_sim/``."""
    app = Starlette(routes=routes_for(sim), exception_handlers={HTTPException: _unknown})
    app.router.redirect_slashes = False  # Halo answers 404, not a redirect
    app.state.simulator = sim
    return app


def dispatch(sim: SimulatorState, method: str, path: str, query: Mapping[str, Any] | str | bytes,
             headers: Mapping[str, str], body: bytes) -> Response:
    """Answer one request synchronously, routed by the app's own routing table."""
    method = method.upper()
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in sim.app().routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            if len(body) > MAX_BODY:
                return envelope(413, "Request body too large.")
            call = Call(method, child["path_params"], params_of(query), headers, body)
            return route.sync(call)  # type: ignore[attr-defined]
    return not_found(method, path)


class Simulator(SimulatorState):
    """The simulator's state with its ways in: the ASGI app, a synchronous call, an httpx transport."""

    def app(self) -> Starlette:
        """The ASGI app serving this simulator (built once)."""
        if self._app is None:
            self._app = create_app(self)
        return self._app

    def handle(self, method: str, path: str, query: Mapping[str, Any] | str | bytes,
               headers: Mapping[str, str], body: bytes) -> Response:
        """One request in, one response out, synchronously, through the app's routing table."""
        return dispatch(self, method, path, query, headers, body)

    def transport(self) -> httpx.MockTransport:
        """An in-process httpx transport (sync clients) answering through ``handle``.

        (For async clients: ``httpx.ASGITransport(app=sim.app())``.)"""

        def handler(request: httpx.Request) -> httpx.Response:
            status, headers, body = self.handle(request.method, request.url.path, request.url.query,
                                                request.headers, request.read())
            return httpx.Response(status, headers=headers, content=body)

        return httpx.MockTransport(handler)

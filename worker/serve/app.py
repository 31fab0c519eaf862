"""The ASGI application of ``halo-reconciler serve``, and running it with uvicorn.

``create_app(settings)`` builds the routes in one place::

    RequestLog                      one api_request_handled line per request; JSON, never a traceback
    └── Starlette
        ├── /healthz, /readyz       probes (no token)
        ├── /v1  -> BearerAuth -> api (reports, guids, openapi.json)
        └── /    -> console         the operator console (worker.serve.console), when passed in;
                                    ``run_server`` always passes it

Unrouted paths answer a JSON 404 (with the console mounted: its sign-in page, or its own 404 page).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.config import Settings
from worker.logging import register_secret
from worker.serve.api import build_api
from worker.serve.console import build_console
from worker.serve.observe import RequestLog
from worker.serve.probes import healthz, readyz

log = structlog.get_logger()

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


PROBE_METHODS = ("GET", "HEAD")


class _Probe:
    """A probe's route for every method (an ASGI app, so Starlette's router matches any method): those it
    does not serve answer 405 here, before the console (mounted at /) could take them for its pages."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.endpoint = endpoint
        self.__name__ = endpoint.__name__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method in PROBE_METHODS:
            response = await self.endpoint(request)
        else:
            response = JSONResponse({"error": f"{request.method} is not allowed here"}, status_code=405,
                                    headers={"Allow": ", ".join(PROBE_METHODS)})
        await response(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def create_app(settings: Settings, *, console: ASGIApp | None = None, **api_options: float) -> Starlette:
    """The whole server. ``console``: an ASGI app to mount at ``/`` (after every other route)."""
    routes: list[BaseRoute] = [
        Route("/healthz", _Probe(healthz)),
        Route("/readyz", _Probe(readyz)),
        Mount("/v1", app=build_api(settings, **api_options)),
    ]
    if console is not None:
        routes.append(Mount("/", app=console))
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestLog, routes=routes)],
        exception_handlers={HTTPException: _http_error},
    )


def run_server(settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve until stopped (SIGINT/SIGTERM: uvicorn finishes the requests in flight)."""
    for token in settings.api_tokens:
        register_secret(token.get_secret_value())
    if not settings.api_tokens:
        log.warning("api_tokens_missing", detail="HALO_RECONCILER_API_TOKENS is empty: /v1 refuses every request (401)")
    # The report path publishes through the Celery app: loaded now, not by the first report that needs it
    # (about a second of imports an application waiting on that report would otherwise pay).
    from worker import celery_app  # noqa: F401  (start-up time: only serve loads it up front)

    log.info("api_serving", host=host, port=port, tokens=len(settings.api_tokens), console="/")
    uvicorn.run(
        create_app(settings, console=build_console(settings)),
        host=host,
        port=port,
        log_config=None,  # keep the process's logging (configure_logging); uvicorn's lines go through it
        access_log=False,  # api_request_handled is the access log
        server_header=False,
        lifespan="off",
        # The console decides trust from the socket's peer alone (HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES):
        # uvicorn's default would rewrite the peer from X-Forwarded-For sent by any loopback client.
        proxy_headers=False,
    )

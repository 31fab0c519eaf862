"""The outermost layer of the app: one log line per request, and JSON instead of a traceback.

``api_request_handled`` carries ``method``, ``path`` (the route's template, ``/v1/guids/{guid}``,
never the raw path, so neither a GUID nor anything else a client sends ends up in the line),
``status`` and ``duration_ms``. Headers are never logged, so neither is a token.

This is the server's edge: an unexpected exception is logged once (``api_request_failed``, with
``exc_info``) and answered with a JSON 500 if nothing was sent yet; it is not re-raised, so uvicorn
prints no traceback either.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.serve.responses import send_json

log = structlog.get_logger()

UNMATCHED = "unmatched"


def path_template(routes: Iterable[BaseRoute], scope: Scope, prefix: str = "") -> str:
    """The template of the route that matches ``scope`` (descending into mounts), or ``unmatched``."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        path = getattr(route, "path", "")
        if isinstance(route, Mount):
            inner = path_template(route.routes, {**scope, **child}, prefix + path)
            if inner != UNMATCHED:
                return inner
            continue
        return prefix + path
    return UNMATCHED


class RequestLog:
    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self._routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        before = dict(scope)  # routing rewrites root_path in place; match the template on the original
        status = 500
        response_started = False

        async def record(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, record)
        except Exception:  # the server edge: log it once, answer JSON, never a traceback to uvicorn
            log.error("api_request_failed", method=scope.get("method"),
                      path=path_template(self._routes, before), exc_info=True)
            status = 500
            if not response_started:
                await send_json(send, 500, {"error": "internal error; see the server log"})
        finally:
            log.info(
                "api_request_handled",
                method=scope.get("method"),
                path=path_template(self._routes, before),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )

"""``/v1``: the report and the GUID question, for applications in any language.

::

    POST /v1/reports        {"guid": G, "message": M?}  -> 202 {"taken": true}
                            {..., "wait_seconds": W}    -> 200 {"taken", "settled", "current_guid", "action"}
                                                           400 / 413 {"error": ...}
                                                           503 {"taken": false, "error": ...}
    GET  /v1/guids/{guid}   -> 200 {"guid", "current_guid", "practice_id", "state"}, 400, 404, 503
    GET  /v1/openapi.json   -> this API's OpenAPI document

A report takes exactly the Python hook's path (``worker.hooks.report_forbidden``), so coalescing,
stale GUIDs and the outcome counters behave the same whichever way a 403 arrives. Every handler's
work is bounded by ``REQUEST_TIMEOUT_SECONDS`` (503 when it passes); blocking calls run in the
thread pool, never on the event loop. ``BearerAuth`` stands in front of all of it.

A report with ``wait_seconds`` waits on the event loop for the run it leads to (or folds into) to
finish: ``worker.serve.waits`` hears of it from the one Redis subscription the process holds. The
wait holds no thread, no database connection and no worker process.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.core.errors import UnknownPractice
from reconciler.core.guids import InvalidGuid, parse_guid
from reconciler.core.halo_errors import integrator_wide_cause
from reconciler.core.vocabulary import ReportOutcome
from worker import admin, hooks
from worker import coordination as redis_clients
from worker.config import Settings
from worker.db import DatabaseError
from worker.serve.auth import BearerAuth
from worker.serve.body import MAX_BODY_BYTES, BadContentLength, BodyTooLarge, read_body
from worker.serve.openapi import openapi_document
from worker.serve.threads import run_blocking
from worker.serve.waits import RunWaits

log = structlog.get_logger()

REQUEST_TIMEOUT_SECONDS = 10.0
REJECTED_COUNT_SECONDS = 1.0
SOURCE = "http"

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({**extra, "error": message}, status_code=status)


def bounded(handler: Handler) -> Handler:
    """The handler's whole work (reading the body included) within the request timeout; 503 after.
    A handler that chooses to wait moves its deadline on by the wait (``request.state.deadline``)."""

    async def endpoint(request: Request) -> Response:
        timeout = request.app.state.request_timeout
        try:
            with anyio.fail_after(timeout) as scope:
                request.state.deadline = scope
                return await handler(request)
        except TimeoutError:
            log.warning("api_request_timed_out", endpoint=handler.__name__, timeout_s=timeout)
            return _error(503, f"no answer within {timeout:g} s; retry later")

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


class BadReport(Exception):
    pass


MAX_WAIT_SECONDS = 10.0


def parse_report(raw: bytes) -> tuple[str, str | None, float | None]:
    """``(guid, message, wait_seconds)`` from the body, as sent; raise BadReport naming what is wrong."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadReport("the body is not JSON") from None
    if not isinstance(document, dict):
        raise BadReport('the body must be a JSON object: {"guid": "...", "message": "..."}')
    guid = document.get("guid")
    if not isinstance(guid, str):
        raise BadReport('"guid" is required and must be a string')
    message = document.get("message")
    if message is not None and not isinstance(message, str):
        raise BadReport('"message" must be a string or null')
    wait = document.get("wait_seconds")
    if wait is not None:
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 < wait <= MAX_WAIT_SECONDS:
            raise BadReport(f'"wait_seconds" must be a number greater than 0 and at most {MAX_WAIT_SECONDS:g}')
        wait = float(wait)
    return guid, message, wait


@bounded
async def post_report(request: Request) -> Response:
    """Report a 403 Halo answered for a GUID; with ``wait_seconds``, answer once its run finished."""
    try:
        raw = await read_body(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        return _error(413, str(exc))
    except BadContentLength as exc:
        return _error(400, str(exc))
    try:
        guid, message, wait = parse_report(raw)
    except BadReport as exc:
        return _error(400, str(exc))
    try:
        canonical = parse_guid(guid)
    except InvalidGuid as exc:
        # The hook refuses it too, and counts it as rejected: the same count whichever way it came.
        # Losing that count is harmless; it must not turn bad input into a 503.
        with anyio.move_on_after(REJECTED_COUNT_SECONDS):
            await run_blocking(hooks.report_forbidden, guid, message, source=SOURCE)
        return _error(400, str(exc))
    if wait is None:
        if not await run_blocking(hooks.report_forbidden, canonical, message, source=SOURCE):
            return _not_taken()
        return JSONResponse({"taken": True}, status_code=202)
    request.state.deadline.deadline += wait
    return await _report_and_wait(request.app.state.waits, canonical, message, wait)


def _not_taken() -> Response:
    return _error(503, "the report was not taken: the coordination store did not answer; retry later", taken=False)


def _waited(settled: bool, current_guid: str | None, action: str | None) -> Response:
    return JSONResponse({"taken": True, "settled": settled, "current_guid": current_guid, "action": action})


# The outcomes after which no run follows the report, or none the report is owed: answered at once.
_NO_RUN = frozenset({ReportOutcome.STALE, ReportOutcome.UNKNOWN, ReportOutcome.INTEGRATOR_WIDE})
# The GUID is not in the index: a worker looks it up (or already does). The database answers at once
# what that lookup will find: no practice, a replaced GUID (both answered now), or a practice whose
# GUID it is (the lookup's run answers it).
_LOOKING_UP = frozenset({ReportOutcome.LOOKUP, ReportOutcome.FOLDED_LOOKUP})


async def _report_and_wait(waits: RunWaits, guid: str, message: str | None, wait: float) -> Response:
    """Take the report, then wait (at most ``wait`` seconds) for the run that answers it.

    The GUID is watched before the report is taken, so a run finishing in between is not missed."""
    with waits.watch(guid) as finished:
        listening = await waits.listening()
        outcome = await run_blocking(hooks.report, guid, message, source=SOURCE)
        if outcome is None:
            return _not_taken()
        if outcome is ReportOutcome.UNKNOWN:
            return _waited(True, None, None)
        if outcome in _NO_RUN or outcome in _LOOKING_UP or integrator_wide_cause(message):
            # One read, at once (never while waiting): the GUID's practice, if any, and its GUID now.
            try:
                current = await run_blocking(admin.current_guid, guid)
            except (DatabaseError, SQLAlchemyError) as exc:
                log.warning("api_database_failed", error=f"{type(exc).__name__}: {exc}")
                return _waited(False, guid, None)
            if current is None or current != guid:  # no practice has it, or it was replaced: use this
                return _waited(True, current, None)
            if outcome not in _LOOKING_UP:  # no run follows this report
                return _waited(True, guid, None)
        if not listening:
            return _waited(False, guid, None)
        action: str | None = None
        with anyio.move_on_after(wait):
            while True:
                run = await finished.get()
                action = run.action or action
                if run.settles(guid):
                    return _waited(True, run.current_guid, run.action)
    return _waited(False, guid, action)


@bounded
async def get_guid(request: Request) -> Response:
    """Which GUID to use now for a practice known by this GUID (current or any it had)."""
    try:
        canonical = parse_guid(request.path_params["guid"])
    except InvalidGuid as exc:
        return _error(400, str(exc))
    try:
        out = await run_blocking(admin.practice, guid=canonical)
    except UnknownPractice as exc:
        return _error(404, str(exc))
    except (DatabaseError, SQLAlchemyError) as exc:
        log.warning("api_database_failed", error=f"{type(exc).__name__}: {exc}")
        return _error(503, "the database did not answer; retry later")
    return JSONResponse({"guid": canonical, "current_guid": out.halo_guid, "practice_id": out.id,
                         "state": str(out.state)})


async def get_openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Answered as JSON; the exception goes on to the outer RequestLog, which logs it once.
    return _error(500, "internal error; see the server log")


def build_api(settings: Settings, *, request_timeout: float = REQUEST_TIMEOUT_SECONDS) -> Starlette:
    """The ``/v1`` application, to be mounted at ``/v1``."""
    api = Starlette(
        routes=[
            Route("/reports", post_report, methods=["POST"]),
            Route("/guids/{guid}", get_guid, methods=["GET"]),
            Route("/openapi.json", get_openapi, methods=["GET"]),
        ],
        middleware=[Middleware(BearerAuth, tokens=settings.api_tokens)],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    api.state.request_timeout = request_timeout
    api.state.openapi = openapi_document()
    api.state.waits = RunWaits(redis_clients.redis_url)
    return api

"""``/healthz`` and ``/readyz``: no token, no Halo call, short timeouts.

``/healthz`` answers 200 while the process serves. ``/readyz`` answers 200 when the database (its
schema current) and the broker/coordination store answer within ``READY_TIMEOUT_SECONDS``, 503
otherwise. The body says which one failed, not why: it is unauthenticated, and the reason (a host
name, a schema revision) goes to the log as ``api_not_ready``.
"""

from __future__ import annotations

import anyio
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse

from worker.serve.threads import run_blocking
from sqlalchemy.exc import SQLAlchemyError

from reconciler.core.errors import CoordinationError
from worker import coordination, db
from worker.health import check_database

log = structlog.get_logger()

READY_TIMEOUT_SECONDS = 3.0


def database_ready() -> tuple[bool, str]:
    """The database answers with the schema this code needs (the embedded SQLite one is migrated on
    first use, as every command does; PostgreSQL behind its schema is not ready: run ``db upgrade``)."""
    try:
        db.ensure_schema()
    except (db.DatabaseError, SQLAlchemyError, OSError) as exc:  # unreachable or behind: not ready, and why
        return False, f"{type(exc).__name__}: {exc}"
    check = check_database()
    return check.ok, check.detail


def broker_ready() -> tuple[bool, str]:
    """One PING on the bounded client (the hook's: every call within the report timeout)."""
    try:
        coordination.get_redis(bounded=True).ping()
    except CoordinationError as exc:  # not ready; the reason goes to the log
        return False, f"Redis does not answer: {type(exc).__name__}: {exc}"
    return True, "answers"


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    checks: dict[str, bool] = {"database": False, "broker": False}
    reasons: dict[str, str] = {}

    async def run(name: str, probe) -> None:
        try:
            ok, detail = await run_blocking(probe)
        except Exception as exc:  # a probe that fails is a "no", never a 500
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        checks[name] = ok
        if not ok:
            reasons[name] = detail

    with anyio.move_on_after(READY_TIMEOUT_SECONDS):
        async with anyio.create_task_group() as group:
            group.start_soon(run, "database", database_ready)
            group.start_soon(run, "broker", broker_ready)
    for name, ok in checks.items():
        if not ok and name not in reasons:
            reasons[name] = f"no answer within {READY_TIMEOUT_SECONDS:g} s"
    ready = all(checks.values())
    if not ready:
        log.warning("api_not_ready", **reasons)
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

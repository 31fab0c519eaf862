"""The console's operations pages: the outbox (every signed-in operator sees it; admins send an event
again) and the operators (admins add, disable, enable, reset and unlock them), and the banner every
page shows while an event waits undelivered too long.

::

    GET  /outbox                    events newest first: waiting ones (of the configured targets), or
                                    ?status=pending|failed|delivered|all;
                                    ?before=ID for the next (older) page
    POST /outbox/{id}/retry         send one now (admins)
    GET  /operators                 the operators (admins)
    POST /operators                 add one (admins)
    POST /operators/{name}/disable|enable|reset|unlock|role   (admins)

Each goes through ``worker.admin``, the functions the command line calls; each change to an operator is
one decision in the audit trail under the admin's name (with the form's ``note``, if any).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import structlog
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reconciler.core.errors import BadInput, OperationFailed, ReconcilerError
from worker import admin, db
from worker.config import Settings
from worker.serve.console.auth import Operator

log = structlog.get_logger()

PAGE = 50  # events per outbox page (keyset: ?before=the last id shown)

# Fixed messages a redirect may name (?done=...).
DONE = {
    "retried": "Delivered.",
    "operator_added": "Operator added.",
    "operator_disabled": "Operator disabled: their sessions ended.",
    "operator_enabled": "Operator enabled.",
    "operator_reset": "Password reset: their sessions ended.",
    "operator_unlocked": "Sign-in lock lifted.",
    "operator_role": "Role changed: it counts from their next request.",
}


def outbox_banner(settings: Settings) -> list[dict[str, Any]]:
    """The targets whose oldest undelivered event waited longer than the alert threshold (the banner)."""
    now = datetime.now(UTC)
    try:
        waiting = admin.outbox_waiting()
    except (SQLAlchemyError, db.DatabaseError) as exc:  # the page still renders; the database check says why
        log.warning("console_outbox_unreadable", error=str(exc)[:300])
        return []
    return [{"target": w.target, "pending": w.pending, "failed": w.failed, "age": int(w.age_seconds(now)),
             "last_error": w.oldest_last_error}
            for w in waiting if w.age_seconds(now) > settings.outbox_alert_seconds]


def _note(form: dict) -> str | None:
    """The form's note, when one was sent (the audit trail keeps it beside the admin's name)."""
    note = form.get("note")
    return str(note) if note is not None else None


def routes(console: Any, page: Callable[..., Any], action: Callable[..., Any]) -> list[Route]:
    async def outbox(request: Request, operator: Operator, *, error: str | None = None,
                     status: int = 200) -> Response:
        wanted = request.query_params.get("status", "")
        if wanted not in ("", "all", "pending", "failed", "delivered"):
            wanted = ""
        before = request.query_params.get("before", "")
        before_id = int(before) if before.isdigit() and len(before) < 19 else None
        rows = await run_in_threadpool(lambda: admin.outbox_events(
            wanted if wanted not in ("", "all") else None, limit=PAGE + 1, before_id=before_id,
            undelivered=wanted == "", configured_only=wanted == ""))
        elsewhere = await run_in_threadpool(admin.outbox_unsent_elsewhere) if wanted == "" else {}
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        older = f"/outbox?{urlencode({'status': wanted, 'before': rows[-1].id})}" if more else None
        return console.page(request, "outbox.html", operator, rows=rows, status_filter=wanted, older=older,
                            elsewhere=elsewhere,
                            statuses=(("", "waiting (pending and failed)"), ("pending", "pending"),
                                      ("failed", "failed"), ("delivered", "delivered"), ("all", "every status")),
                            error=error, status=status, done_text=DONE.get(request.query_params.get("done", "")))

    async def retry(request: Request, operator: Operator, form: dict) -> Response:
        event_id = int(request.path_params["event_id"])
        try:
            await run_in_threadpool(lambda: admin.retry_outbox(event_id, by=operator.name))
        except (OperationFailed, ReconcilerError) as exc:
            log.info("console_outbox_retry_refused", operator=operator.name, event_id=event_id, error=str(exc)[:300])
            return await outbox(request, operator, error=str(exc), status=409)
        return RedirectResponse(f"/outbox?{urlencode({'status': 'all', 'done': 'retried'})}", status_code=303)

    async def operators(request: Request, operator: Operator, *, error: str | None = None,
                        status: int = 200) -> Response:
        if not operator.is_admin:
            return console.refuse(request, operator, 403, "Only an admin manages operators.")
        rows = await run_in_threadpool(admin.list_operators)
        return console.page(request, "operators.html", operator, rows=rows, error=error, status=status,
                            done_text=DONE.get(request.query_params.get("done", "")))

    def manage(call: Callable[[Operator, dict, str], Any], done: str) -> Callable[..., Awaitable[Response]]:
        async def handler(request: Request, operator: Operator, form: dict) -> Response:
            name = str(request.path_params.get("name") or form.get("name", "")).strip()
            try:
                await run_in_threadpool(call, operator, form, name)
            except (BadInput, OperationFailed, ReconcilerError) as exc:
                return await operators(request, operator, error=str(exc), status=400)
            log.info("console_operator_managed", operator=operator.name, action=done, target=name[:128])
            return RedirectResponse(f"/operators?{urlencode({'done': done})}", status_code=303)
        return handler

    def add(operator: Operator, form: dict, name: str) -> None:
        admin.add_operator(name, str(form.get("role", "")), str(form.get("password", "")), by=operator.name,
                           note=_note(form))

    def disable(operator: Operator, form: dict, name: str) -> None:
        if name == operator.name:
            raise BadInput("you cannot disable yourself: ask another admin")
        admin.disable_operator(name, by=operator.name, note=_note(form))

    def role(operator: Operator, form: dict, name: str) -> None:
        if name == operator.name:
            raise BadInput("you cannot change your own role: ask another admin")
        admin.set_operator_role(name, str(form.get("role", "")), by=operator.name, note=_note(form))

    def reset(operator: Operator, form: dict, name: str) -> None:
        admin.reset_operator_password(name, str(form.get("password", "")), by=operator.name, note=_note(form))

    return [
        Route("/outbox", page(outbox), methods=["GET"]),
        Route("/outbox/{event_id:int}/retry", action(retry, role="admin"), methods=["POST"]),
        Route("/operators", page(operators), methods=["GET"]),
        Route("/operators", action(manage(add, "operator_added"), role="admin"), methods=["POST"]),
        Route("/operators/{name}/disable", action(manage(disable, "operator_disabled"), role="admin"),
              methods=["POST"]),
        Route("/operators/{name}/enable",
              action(manage(lambda o, f, n: admin.enable_operator(n, by=o.name, note=_note(f)), "operator_enabled"), role="admin"),
              methods=["POST"]),
        Route("/operators/{name}/reset", action(manage(reset, "operator_reset"), role="admin"), methods=["POST"]),
        Route("/operators/{name}/role", action(manage(role, "operator_role"), role="admin"), methods=["POST"]),
        Route("/operators/{name}/unlock",
              action(manage(lambda o, f, n: admin.unlock_operator(n, by=o.name, note=_note(f)),
                                 "operator_unlocked"), role="admin"),
              methods=["POST"]),
    ]

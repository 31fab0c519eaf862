"""The operator console's routes: sign-in, pages, and the decisions (through ``worker.admin``).

::

    GET  /                         what needs me (held changes, open tickets by kind, guard, sweep)
    GET  /practices?q=             search by name, PMS ID or any GUID ever held
    GET  /practices/{id}           GUID timeline, open tickets, audit
    GET  /practices/{id}/change    a held change side by side; approve / reject / pair (approvers)
    POST /practices/{id}/approve|reject|pair
    GET  /tickets, /tickets/{id}   tickets; POST /tickets/{id}/ack|resolve (approvers)
    GET  /audit                    the audit trail, filtered (actor, action, practice, dates), a page at a time
    GET  /runbook                  docs/RUNBOOK.md (ticket pages link to its sections)
    POST /autoswitch               pause / resume (approvers)
    GET|POST /signin, POST /signout

Every request without a signed-in operator gets the sign-in page and nothing else (401), every POST
needs the CSRF token, and a viewer's POST is refused (403) before anything is read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models import Operator as OperatorRow
from reconciler.adapters import people
from reconciler.adapters.passwords import verify_password
from reconciler.core.errors import BadInput, OperationFailed, ReconcilerError
from reconciler.core.halo_errors import HaloError
from reconciler.core import runbook
from reconciler.core.vocabulary import TicketKind
from worker import admin, db
from worker.config import Settings
from worker.serve.console import manage, views
from worker.serve.console.auth import (
    PRESESSION_COOKIE,
    PRESESSION_SECONDS,
    SESSION_COOKIE,
    Operator,
    Sessions,
    load_secret,
    same_token,
)

log = structlog.get_logger()

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 16 * 1024

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")

# Fixed messages a redirect may name (?done=...): nothing a client sends is echoed back as text.
DONE = {
    "approved": "Approved: Halo was asked again and the practice switched.",
    "approval_recorded": "Your approval is recorded: another person must approve before it switches.",
    "rejected": "Rejected: the practice keeps its current GUID.",
    "paired": "Paired and switched.",
    "acknowledged": "Ticket acknowledged.",
    "resolved": "Ticket resolved.",
    "paused": "Automatic switching paused.",
    "resumed": "Automatic switching resumed.",
}


class SecurityHeaders:
    """Every console answer: a CSP without inline script, no framing, no sniffing, and no caching
    (pages carry practice data; the stylesheet is the one exception)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @property
    def routes(self) -> list:
        """The console's routes, so the request log names each by its template (``Mount.routes``)."""
        return list(getattr(self.app, "routes", []))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cache-control", b"public, max-age=3600" if static else b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add)


class Console:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions = Sessions(settings, load_secret(settings))
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals["age"] = views.age
        self.templates.env.globals["age_seconds"] = lambda seconds: views.age(datetime.now(UTC) - timedelta(seconds=seconds))
        self.templates.env.globals["fmt"] = self.templates.env.globals["when"] = views.when

    # --- who is asking -----------------------------------------------------------------------------
    def _lookup(self, name: str) -> OperatorRow | None:
        with admin.unit_of_work() as session:
            row = people.operator(session, name=name)
            if row is not None:
                session.expunge(row)
            return row

    async def operator(self, request: Request) -> Operator | None:
        proxied = self.sessions.proxied_name(request)
        if proxied is not None:
            row = await run_in_threadpool(self._lookup, proxied)
            if row is None or row.disabled_at is not None:
                log.warning("console_proxy_operator_unknown", operator=proxied[:128])
                return None
            return Operator(row.name, row.role, self.sessions.proxy_csrf(row.name), via_proxy=True)
        token = self.sessions.session_token(request)
        if token is None:
            return None
        found = await run_in_threadpool(self.sessions.resolve, token)
        if found is None:
            return None  # signed out, expired, disabled, removed or reset: the session is over
        row, csrf = found
        return Operator(row.name, row.role, csrf)

    # --- rendering ---------------------------------------------------------------------------------
    def page(self, request: Request, name: str, operator: Operator | None, status: int = 200,
             **context: Any) -> Response:
        done = context.pop("done_text", None) or DONE.get(request.query_params.get("done", ""))
        banner = getattr(request.state, "outbox_late", None) if operator is not None else None
        return self.templates.TemplateResponse(request, name, {"operator": operator, "done": done,
                                                               "outbox_late": banner, **context},
                                               status_code=status)

    def signin_page(self, request: Request, *, status: int = 401, error: str | None = None,
                    next_path: str | None = None) -> Response:
        # Keep a valid pre-session: a second sign-in page (a favicon fetch, another tab) must not
        # invalidate the form already on screen.
        token = self.sessions.presession_token(request)
        cookie = None
        if token is None:
            token, cookie = self.sessions.new_presession()
        response = self.page(request, "signin.html", None, status=status, csrf=token, error=error,
                             next_path=_safe_next(next_path or request.url.path),
                             proxy_mode=bool(self.settings.console_proxy_header))
        if cookie is not None:
            response.set_cookie(PRESESSION_COOKIE, cookie, **self.sessions.cookie_options(request, PRESESSION_SECONDS))
        return response

    def refuse(self, request: Request, operator: Operator | None, status: int, message: str) -> Response:
        return self.page(request, "error.html", operator, status=status, message=message)

    # --- sign-in -----------------------------------------------------------------------------------
    async def signin(self, request: Request) -> Response:
        if request.method == "GET":
            if await self.operator(request) is not None:
                return RedirectResponse("/", status_code=303)
            return self.signin_page(request, status=200, next_path=request.query_params.get("next"))
        form = await _form(request)
        if form is None:
            return self.signin_page(request, status=413, error="That request was too large.")
        if not same_token(form.get("csrf"), self.sessions.presession_token(request)):
            return self.signin_page(request, status=403, error="The sign-in form expired; please try again.")
        name, password = str(form.get("name", "")).strip()[:128], str(form.get("password", ""))
        address = self.sessions.client_address(request)
        wait = await run_in_threadpool(self.sessions.signin_wait, name, address)
        if wait > 0:
            log.warning("console_signin_throttled", operator=name, client=address)
            return self.signin_page(request, status=429, next_path=form.get("next"),
                                    error=f"Too many failed sign-ins; try again in {int(wait // 60) + 1} min.")
        row = await run_in_threadpool(self._lookup, name) if name else None
        ok = await run_in_threadpool(verify_password, row.password_hash if row else None, password)
        if not ok or row is None or row.disabled_at is not None:
            # A disabled operator's right password is refused like a wrong one (and counted).
            await run_in_threadpool(self.sessions.signin_failed, name, address)
            log.info("console_signin_failed", operator=name, client=address)
            return self.signin_page(request, status=401, error="Wrong name or password.", next_path=form.get("next"))
        await run_in_threadpool(self.sessions.signin_succeeded, name)
        token = await run_in_threadpool(self.sessions.start, row.name)
        log.info("console_signed_in", operator=row.name, role=row.role, client=address)
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        response.set_cookie(SESSION_COOKIE, token,
                            **self.sessions.cookie_options(request, self.settings.console_session_seconds))
        response.delete_cookie(PRESESSION_COOKIE, path="/")
        return response

    async def signout(self, request: Request, operator: Operator, form: dict) -> Response:
        token = self.sessions.session_token(request)
        if token is not None:
            await run_in_threadpool(self.sessions.end, token)  # the cookie, replayed, opens nothing
        log.info("console_signed_out", operator=operator.name)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                               secure=self.sessions.is_secure(request))
        return response

    # --- pages -------------------------------------------------------------------------------------
    async def home(self, request: Request, operator: Operator) -> Response:
        data = await run_in_threadpool(views.overview, self.settings)
        return self.page(request, "home.html", operator, o=data)

    async def practices(self, request: Request, operator: Operator) -> Response:
        params = request.query_params
        q, state = params.get("q", "").strip()[:200], params.get("state", "").strip()[:16]
        try:
            listing = await run_in_threadpool(views.practices, q, state, params.get("cursor"))
        except BadInput as exc:
            return self.refuse(request, operator, 400, str(exc))
        return self.page(request, "practices.html", operator, q=q, state=state, listing=listing,
                         states=views.PRACTICE_STATES, next_url=_next_url(request, listing.next_cursor))

    async def practice(self, request: Request, operator: Operator) -> Response:
        data = await run_in_threadpool(views.practice_page, _int(request, "practice_id"))
        return self.page(request, "practice.html", operator, p=data, names={data.row.id: data.row.practice_name})

    async def change(self, request: Request, operator: Operator, *, error: str | None = None,
                     status: int = 200) -> Response:
        data = await run_in_threadpool(views.practice_page, _int(request, "practice_id"))
        approvals = await run_in_threadpool(admin.approvals, _int(request, "practice_id"))
        return self.page(request, "change.html", operator, p=data, error=error, status=status, approvals=approvals)

    async def tickets(self, request: Request, operator: Operator) -> Response:
        status, kind = request.query_params.get("status", ""), request.query_params.get("kind", "")
        try:
            listing = await run_in_threadpool(views.ticket_list, status, kind, request.query_params.get("cursor"))
        except BadInput as exc:
            return self.refuse(request, operator, 400, str(exc))
        return self.page(request, "tickets.html", operator, rows=listing.items, names=listing.names,
                         status_filter=status, kind=kind, statuses=views.TICKET_STATUSES,
                         kinds=[str(k) for k in TicketKind], next_url=_next_url(request, listing.next_cursor),
                         paged="cursor" in request.query_params)

    async def ticket(self, request: Request, operator: Operator, *, error: str | None = None,
                     status: int = 200) -> Response:
        row, practice, entries = await run_in_threadpool(views.ticket, _int(request, "ticket_id"))
        breakers = await run_in_threadpool(views.ticket_breakers, self.settings, row)
        heading, anchor = runbook.section_for(str(row.reason))
        return self.page(request, "ticket.html", operator, t=row, practice=practice, entries=entries, error=error,
                         status=status, breakers=breakers, runbook_heading=heading, now_epoch=time.time(),
                         runbook_link=runbook.link(self.settings.runbook_url or "/runbook", anchor),
                         names={practice.id: practice.practice_name} if practice else {})

    async def runbook_page(self, request: Request, operator: Operator) -> Response:
        html = await run_in_threadpool(views.runbook_html)
        if html is None:
            return self.refuse(request, operator, 404, "The runbook (docs/RUNBOOK.md) is not beside this installation; "
                                                       "set HALO_RECONCILER_RUNBOOK_URL to where your team reads it.")
        return self.page(request, "runbook.html", operator, body=html)

    async def audit(self, request: Request, operator: Operator) -> Response:
        filters = {name: request.query_params.get(name, "").strip()[:128] for name in views.AUDIT_FILTERS}
        try:
            listing = await run_in_threadpool(views.audit, filters, request.query_params.get("cursor"))
        except BadInput as exc:
            return self.refuse(request, operator, 400, str(exc))
        return self.page(request, "audit.html", operator, entries=listing.items, names=listing.names,
                         filters=filters, actions=views.AUDIT_ACTIONS, next_url=_next_url(request, listing.next_cursor),
                         paged="cursor" in request.query_params)

    # --- decisions (approvers) --------------------------------------------------------------------------
    async def _decide(self, request: Request, operator: Operator, call: Callable[[], Any], done: str,
                      redirect: str, again: Callable[..., Awaitable[Response]]) -> Response:
        try:
            await run_in_threadpool(call)
        except (BadInput, OperationFailed, ReconcilerError, HaloError, db.DatabaseError) as exc:
            message = exc.message if isinstance(exc, HaloError) else str(exc)
            log.info("console_decision_refused", operator=operator.name, action=done, error=message[:300])
            return await again(request, operator, error=message, status=409)
        log.info("console_decision_made", operator=operator.name, action=done)
        return RedirectResponse(f"{redirect}?{urlencode({'done': done})}", status_code=303)

    async def approve(self, request: Request, operator: Operator, form: dict) -> Response:
        pid = _int(request, "practice_id")
        if not str(form.get("note", "")).strip():
            return await self.change(request, operator, error="Say why in the note: who confirmed the change, and how.",
                                     status=400)
        outcome: dict[str, str] = {}

        def approve() -> None:
            out = admin.approve(pid, by=operator.name, note=form.get("note"))
            if out.state == "held":  # recorded; another person's approval switches it
                outcome["done"] = "approval_recorded"

        response = await self._decide(request, operator, approve, "approved", f"/practices/{pid}", self.change)
        if outcome and isinstance(response, RedirectResponse):
            return RedirectResponse(f"/practices/{pid}/change?{urlencode({'done': outcome['done']})}", status_code=303)
        return response

    async def reject(self, request: Request, operator: Operator, form: dict) -> Response:
        pid = _int(request, "practice_id")
        if not str(form.get("note", "")).strip():
            return await self.change(request, operator, error="Say why in the note: why the change is refused.",
                                     status=400)
        return await self._decide(request, operator, lambda: admin.reject(pid, by=operator.name, note=form.get("note")),
                                  "rejected", f"/practices/{pid}", self.change)

    async def pair(self, request: Request, operator: Operator, form: dict) -> Response:
        pid = _int(request, "practice_id")
        code = str(form.get("pairing_code", ""))
        return await self._decide(request, operator,
                                  lambda: admin.pair(pid, code, by=operator.name, note=form.get("note")),
                                  "paired", f"/practices/{pid}", self.change)

    async def ack(self, request: Request, operator: Operator, form: dict) -> Response:
        tid = _int(request, "ticket_id")
        return await self._decide(request, operator,
                                  lambda: admin.acknowledge_ticket(tid, by=operator.name, note=form.get("note")),
                                  "acknowledged", f"/tickets/{tid}", self.ticket)

    async def resolve(self, request: Request, operator: Operator, form: dict) -> Response:
        tid = _int(request, "ticket_id")
        return await self._decide(request, operator,
                                  lambda: admin.resolve_ticket(tid, by=operator.name, note=form.get("note")),
                                  "resolved", f"/tickets/{tid}", self.ticket)

    async def autoswitch(self, request: Request, operator: Operator, form: dict) -> Response:
        action = str(form.get("action", ""))
        if action not in ("pause", "resume"):
            return self.refuse(request, operator, 400, "Choose pause or resume.")
        return await self._decide(request, operator,
                                  lambda: admin.autoswitch(action, by=operator.name, note=form.get("note")),
                                  "paused" if action == "pause" else "resumed", "/", _home_again(self))


def _home_again(console: Console) -> Callable[..., Awaitable[Response]]:
    async def again(request: Request, operator: Operator, *, error: str, status: int) -> Response:
        data = await run_in_threadpool(views.overview, console.settings)
        return console.page(request, "home.html", operator, o=data, error=error, status=status)
    return again


async def _no_icon(request: Request) -> Response:
    return Response(status_code=204)  # browsers ask for one; the console has none


def _next_url(request: Request, cursor: str | None) -> str | None:
    """This page's address with the next page's cursor, every filter kept (None: the last page)."""
    if cursor is None:
        return None
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", "done")]
    return f"{request.url.path}?{urlencode([*kept, ('cursor', cursor)])}"


def _int(request: Request, name: str) -> int:
    return int(request.path_params[name])


def _safe_next(value: Any) -> str:
    """Only a path on this server (never ``//host`` or a URL): no open redirect after sign-in."""
    text = str(value or "/")
    if not text.startswith("/") or text.startswith("//") or "\\" in text or text.startswith("/signin"):
        return "/"
    return text[:500]


async def _form(request: Request) -> dict[str, str] | None:
    """The form fields, or None when the body is larger than any console form."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v for k, v in pairs}


Page = Callable[[Request, Operator], Awaitable[Response]]
Action = Callable[[Request, Operator, dict], Awaitable[Response]]


def build_console(settings: Settings) -> ASGIApp:
    """The console as an ASGI app to mount at ``/`` of ``serve``."""
    console = Console(settings)

    def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            operator = await console.operator(request)
            if operator is None:
                return console.signin_page(request)
            request.state.outbox_late = await run_in_threadpool(manage.outbox_banner, console.settings)
            try:
                return await handler(request, operator)
            except BadInput as exc:
                return console.refuse(request, operator, 404, str(exc))
        return endpoint

    def action(handler: Action, *, approver: bool = True, role: str | None = None
               ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            operator = await console.operator(request)
            if operator is None:
                return console.signin_page(request, status=401)
            form = await _form(request)
            if form is None:
                return console.refuse(request, operator, 413, "That request was too large.")
            if not same_token(form.get("csrf"), operator.csrf):
                log.warning("console_csrf_refused", operator=operator.name, path=request.url.path)
                return console.refuse(request, operator, 403, "This form is missing its security token; "
                                                              "reload the page and try again.")
            if approver and not operator.is_approver:
                log.warning("console_forbidden", operator=operator.name, path=request.url.path)
                return console.refuse(request, operator, 403, "Viewers see everything and change nothing: "
                                                              "ask an approver to decide.")
            if role == "admin" and not operator.is_admin:
                log.warning("console_forbidden", operator=operator.name, path=request.url.path)
                return console.refuse(request, operator, 403, "Only an admin may do that.")
            try:
                return await handler(request, operator, form)
            except BadInput as exc:
                return console.refuse(request, operator, 404, str(exc))
        return endpoint

    async def not_found(request: Request) -> Response:
        operator = await console.operator(request)
        if operator is None:
            return console.signin_page(request)
        return console.refuse(request, operator, 404, "There is no such page.")

    routes = [
        Route("/", page(console.home), methods=["GET"]),
        Route("/signin", console.signin, methods=["GET", "POST"]),
        Route("/signout", action(console.signout, approver=False), methods=["POST"]),
        Route("/practices", page(console.practices), methods=["GET"]),
        Route("/practices/{practice_id:int}", page(console.practice), methods=["GET"]),
        Route("/practices/{practice_id:int}/change", page(console.change), methods=["GET"]),
        Route("/practices/{practice_id:int}/approve", action(console.approve), methods=["POST"]),
        Route("/practices/{practice_id:int}/reject", action(console.reject), methods=["POST"]),
        Route("/practices/{practice_id:int}/pair", action(console.pair), methods=["POST"]),
        Route("/tickets", page(console.tickets), methods=["GET"]),
        Route("/tickets/{ticket_id:int}", page(console.ticket), methods=["GET"]),
        Route("/tickets/{ticket_id:int}/ack", action(console.ack), methods=["POST"]),
        Route("/tickets/{ticket_id:int}/resolve", action(console.resolve), methods=["POST"]),
        Route("/audit", page(console.audit), methods=["GET"]),
        Route("/runbook", page(console.runbook_page), methods=["GET"]),
        Route("/autoswitch", action(console.autoswitch), methods=["POST"]),
        *manage.routes(console, page, action),
        Route("/favicon.ico", _no_icon, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    async def unrouted(request: Request, exc: Exception) -> Response:
        return await not_found(request)

    app = Starlette(routes=routes, exception_handlers={404: unrouted, 405: unrouted})
    return SecurityHeaders(app)

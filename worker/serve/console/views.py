"""What the console's pages show, read in one unit of work each (blocking: run in a thread).

The pages only read here; every decision goes through ``worker.admin``, the same use cases the
command line calls, with the signed-in operator as the actor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import structlog
from markupsafe import Markup

from models import Action, Practice, PracticeState, Ticket, TicketStatus
from models.guard import AUTOSWITCH_PAUSED
from models.practice import PracticeOut
from reconciler.adapters import listings, people
from reconciler.adapters.coordination import keys
from reconciler.adapters.store import SqlStore
from reconciler.core import runbook
from reconciler.core.breaker import BREAKER_VERDICTS, BreakerState
from reconciler.core.errors import BadInput, CoordinationError
from reconciler.core.identifiers import normalise
from reconciler.core.policy import HELD_REASONS
from reconciler.core.vocabulary import DecisionAction
from worker import admin, wiring
from worker.config import Settings
from worker.coordination import get_redis

log = structlog.get_logger()


def _now() -> datetime:
    return datetime.now(UTC)


def age(since: datetime | None, now: datetime | None = None) -> str:
    """A person's reading of how long ago: 45 s, 12 min, 3 h, 2 d."""
    if since is None:
        return "-"
    seconds = max(0, int(((now or _now()) - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def when(moment: datetime | float | None) -> Markup | str:
    """A ``<time>`` element: UTC in the page, shown in the browser's own time zone by console.js
    (``moment``: a datetime, or epoch seconds as the breaker keeps them)."""
    if moment is None:
        return "-"
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, UTC)
    return Markup('<time datetime="{}">{}</time>').format(moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M:%SZ"))


@dataclass(frozen=True)
class HeldRow:
    practice: Practice
    ticket: Ticket | None


@dataclass
class Overview:
    held: list[HeldRow]
    tickets_by_kind: dict[str, list[Ticket]]
    autoswitch_paused: bool
    autoswitch_reason: str | None
    autoswitch_since: datetime | None
    breakers: list[BreakerState] | None  # None: the coordination store did not answer
    switches_in_window: int
    switch_limit: int
    last_sweep: datetime | None
    last_sweep_known: bool
    names: dict[int, str] = field(default_factory=dict)  # the practices the open tickets name


def _last_sweep() -> tuple[datetime | None, bool]:
    try:
        raw = get_redis().get(keys.last_sweep())
    except CoordinationError as exc:
        log.warning("console_sweep_unknown", error=str(exc))
        return None, False
    if raw is None:
        return None, True
    try:
        return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw), True
    except ValueError:
        return None, False


def _breakers(settings: Settings) -> list[BreakerState] | None:
    try:
        return wiring.breaker(settings).states()
    except CoordinationError as exc:
        log.warning("console_breaker_unknown", error=str(exc))
        return None


def overview(settings: Settings, *, limit: int = 200) -> Overview:
    now = _now()
    with admin.unit_of_work() as session:
        store = SqlStore(session)
        held = store.held_practices(limit=limit)
        held_tickets = store.held_tickets([p.id for p in held], reasons=HELD_REASONS)  # type: ignore[misc]
        by_kind: dict[str, list[Ticket]] = {}
        for ticket in store.list_tickets():  # the unresolved ones
            by_kind.setdefault(str(ticket.kind), []).append(ticket)
        policy = wiring.policy(settings)
        guard = store.guard_state(now=now, policy=policy)
        paused = store.flag(AUTOSWITCH_PAUSED)
        onboarded = store.count_practices()
        names = listings.practice_names(session, ids=[t.practice_id for rows in by_kind.values() for t in rows])
    limit_ = max(policy.mass_change_min, int(policy.mass_change_fraction * onboarded))
    last, known = _last_sweep()
    return Overview(
        held=[HeldRow(p, held_tickets.get(p.id)) for p in held],  # type: ignore[arg-type]
        tickets_by_kind=by_kind,
        autoswitch_paused=paused is not None, autoswitch_reason=paused.reason if paused else None,
        autoswitch_since=paused.updated_at if paused else None,
        breakers=_breakers(settings), switches_in_window=guard.switches_in_window, switch_limit=limit_,
        last_sweep=last, last_sweep_known=known, names=names,
    )


@dataclass(frozen=True)
class IdentifierRow:
    name: str
    recorded: Any
    seen: Any
    differs: bool


@dataclass
class PracticePage:
    out: PracticeOut
    row: Practice
    open_tickets: list[Ticket]
    audit: list[people.AuditEntry]
    last: Any  # the last reconciliation that asked Halo, or None
    identifiers: list[IdentifierRow] = field(default_factory=list)
    sites: list[dict[str, Any]] = field(default_factory=list)
    site_check: dict[str, Any] | None = None
    held_ticket: Ticket | None = None


def _identifier_rows(recorded: dict[str, Any], seen: dict[str, Any] | None) -> list[IdentifierRow]:
    seen = seen if seen is not None else recorded
    names = list(dict.fromkeys([*recorded, *seen]))
    rows = []
    for name in names:
        a, b = recorded.get(name), seen.get(name)
        differs = (normalise(a) if a is not None else None) != (normalise(b) if b is not None else None)
        rows.append(IdentifierRow(name, a, b, differs))
    return rows


def practice_page(practice_id: int, *, audit_limit: int = 100) -> PracticePage:
    with admin.unit_of_work() as session:
        store = SqlStore(session)
        row = store.practice(practice_id)
        out = store.practice_out(row)
        open_ = list(store.list_tickets(practice_id=practice_id))
        last = store.last_reconciliation(practice_id)
        entries = listings.audit_pages(session, practice_id=practice_id, at_most=audit_limit)
        session.expunge_all()
    answer = (last.halo_answer if last is not None else None) or {}
    held = [t for t in open_ if t.reason in HELD_REASONS]
    return PracticePage(
        out=out, row=row, open_tickets=open_, audit=entries, last=last,
        identifiers=_identifier_rows(dict(row.identifiers), row.proposed_identifiers),
        sites=[s for s in answer.get("sites", []) if isinstance(s, dict)],
        site_check=answer.get("site_check") if isinstance(answer.get("site_check"), dict) else None,
        held_ticket=held[0] if held else None,
    )


def ticket(ticket_id: int) -> tuple[Ticket, Practice | None, list[people.AuditEntry]]:
    with admin.unit_of_work() as session:
        store = SqlStore(session)
        row = store.ticket(ticket_id)
        practice = store.practice(row.practice_id) if row.practice_id is not None else None
        entries = [e for e in listings.audit_pages(session, practice_id=row.practice_id, at_most=200)
                   if e.ticket_id == ticket_id] if row.practice_id is not None else [
            e for e in listings.audit_pages(session, at_most=500) if e.ticket_id == ticket_id]
        session.expunge_all()
    return row, practice, entries


PAGE = 50
RUNBOOK = Path(__file__).resolve().parents[3] / "docs" / "RUNBOOK.md"


def ticket_breakers(settings: Settings, ticket: Ticket) -> list[BreakerState] | None:
    """The integrator-wide breakers, for an integrator-wide ticket that one of them stands for
    (None: not such a ticket, or the coordination store did not answer)."""
    if ticket.practice_id is not None or str(ticket.reason) not in {str(v) for v in BREAKER_VERDICTS}:
        return None
    return _breakers(settings)


@cache
def runbook_html() -> Markup | None:
    """docs/RUNBOOK.md as HTML, each heading with GitHub's anchor (None: not beside this code)."""
    try:
        text = RUNBOOK.read_text(encoding="utf-8")
    except OSError:
        return None
    from markdown_it import MarkdownIt  # only for the runbook page (start-up time of serve)

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and i + 1 < len(tokens):
            token.attrSet("id", runbook.slug(tokens[i + 1].content))
    return Markup(md.renderer.render(tokens, md.options, {}))


def ticket_list(status: str | None, kind: str | None, cursor: str | None = None) -> admin.Listing[Any]:
    return admin.tickets_listing(status or None, kind or None, cursor=cursor or None, limit=PAGE)


def practices(text: str, state: str, cursor: str | None = None) -> admin.Listing[Any]:
    """A page of the practice browser: one state's practices or a search's, and how many in each state."""
    return admin.practices_listing(state=state or None, text=text or None, cursor=cursor or None, limit=PAGE,
                                   counts=True)


AUDIT_FILTERS = ("actor", "action", "practice", "since", "until", "about")  # about=operators: operator changes only
AUDIT_ACTIONS = sorted({str(a) for a in Action} | {str(a) for a in DecisionAction})


def audit(filters: dict[str, str], cursor: str | None = None) -> admin.Listing[people.AuditEntry]:
    practice = filters.get("practice") or ""
    if practice and not (practice.isdigit() and len(practice) <= 9):
        raise BadInput(f"a practice is named by its id (a number), not {practice[:40]!r}")
    return admin.audit_listing(int(practice) if practice else None, actor=filters.get("actor"),
                               action=filters.get("action"), since=filters.get("since"), until=filters.get("until"),
                               operator_changes=filters.get("about") == "operators", cursor=cursor or None, limit=PAGE)


TICKET_STATUSES = [str(s) for s in TicketStatus]
PRACTICE_STATES = [str(s) for s in PracticeState]

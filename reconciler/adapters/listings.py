"""SQL for the lists that grow with the fleet: practices, tickets and the audit trail, a page at a time.

Every list is a keyset page: it starts after the previous page's last key (a cursor), never at an
OFFSET, so page 2,000 costs what page 1 does (each read is one index range; docs/BENCHMARKS.md,
"lists"). A page fetches one row more than it shows: that row's presence says whether a next page
exists, without counting.

Cursors are opaque strings to their callers (the console's links, the command line's ``--cursor``);
a malformed one is bad input.

- practices: ``id`` ascending, optionally one state and a search text; the counts by state say how
  many matched ("12 held of 4,213");
- tickets: ``id`` ascending, by status, kind, practice;
- the audit trail: newest first over two tables (the worker's reconciliations and people's
  decisions), merged on ``(at, source, id)`` with a person's decision first at the same instant (it
  caused what the worker wrote then), filtered by actor, action, practice and a date range, or to
  changes to operators only (people's decisions about people: added, disabled, reset, ...).
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import func, or_, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from models import GuidHistory, OperatorDecision, Practice, Reconciliation, Ticket, TicketKind, TicketStatus
from reconciler.adapters.people import AuditEntry, _decision_entry, _reconciliation_entry
from reconciler.core.errors import BadInput
from reconciler.core.guids import InvalidGuid, parse_guid
from reconciler.core.vocabulary import OPERATOR_CHANGES, WORKER_ACTOR

T = TypeVar("T")

MAX_PAGE = 1000
# A person's decision comes before the worker's row written at the same instant (newest first).
_DECISION, _RECONCILIATION = 1, 0


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None: this is the last page


def _limit(limit: int) -> int:
    if limit < 1 or limit > MAX_PAGE:
        raise BadInput(f"a page holds 1 to {MAX_PAGE} rows, not {limit}")
    return limit


def _id_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 18:
        raise BadInput(f"not a cursor from this list: {cursor[:40]!r}")
    return int(cursor)


# --- practices ------------------------------------------------------------------------------------


def _practice_filter(*, state: str | None, text: str | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if state:
        where.append(col(Practice.state) == state)
    needle = (text or "").strip().lower()
    if not needle:
        return where
    try:
        guid = parse_guid(needle)
    except InvalidGuid:
        guid = None
    if guid is not None:  # GUIDs are stored in one form: two index probes
        ever_held = select(GuidHistory.practice_id).where(GuidHistory.guid == guid)
        where.append(or_(col(Practice.halo_guid) == guid, col(Practice.id).in_(ever_held)))
    else:  # trigram indexes on PostgreSQL (migration 0009); LIKE's wildcards in the text match themselves
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(or_(func.lower(Practice.practice_name).like(pattern, escape="\\"),
                         func.lower(Practice.pms_id).like(pattern, escape="\\")))
    return where


# A search counts its matches up to this many; past it, "more than 1,000" (and a narrower search).
SEARCH_COUNT_CAP = 1000


def practices_query(*, state: str | None = None, text: str | None = None, cursor: str | None = None,
                    limit: int = 50, ids: Sequence[int] | None = None) -> Any:
    """The statement of one page of practices in id order (``limit + 1`` rows: the last says a next
    page exists); ``ids``: among these only (a search's matches, found first)."""
    limit = _limit(limit)
    after = _id_cursor(cursor)
    where = _practice_filter(state=state, text=text) if ids is None else [col(Practice.id).in_(list(ids))]
    if after is not None:
        where.append(col(Practice.id) > after)
    return select(Practice).where(*where).order_by(col(Practice.id)).limit(limit + 1)


def practices_page(session: Session, *, state: str | None = None, text: str | None = None,
                   cursor: str | None = None, limit: int = 50) -> Page[Practice]:
    """Practices in id order (one state's, or those whose name or PMS ID contains ``text``, or that
    have or had it as GUID), the page after ``cursor``.

    A search finds its matches first, through the trigram or GUID indexes and at most
    ``SEARCH_COUNT_CAP`` of them, then reads their page by id: a planner that misjudges ``LIKE`` would
    otherwise walk the primary key for a page of a rare text and read the whole table. When more
    match than that, matches are common and the walk in id order finds a page at once."""
    ids: list[int] | None = None
    if (text or "").strip():
        after = _id_cursor(cursor)
        where = _practice_filter(state=state, text=text)
        if after is not None:
            where.append(col(Practice.id) > after)
        found = list(session.exec(select(Practice.id).where(*where).limit(SEARCH_COUNT_CAP + 1)).all())
        if len(found) <= SEARCH_COUNT_CAP:
            ids = sorted(found)[:limit + 1]
    query = practices_query(state=state, text=text, cursor=cursor, limit=limit, ids=ids)
    rows = list(session.exec(query).all()) if ids is None or ids else []
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1].id) if more and rows else None)


def count_practices_by_state(session: Session, *, text: str | None = None,
                             cap: int | None = None) -> dict[str, int]:
    """How many practices are in each state (of those matching ``text``); states with none are absent.
    ``cap``: count at most ``cap + 1`` matches (a sum past ``cap`` means "more than ``cap``")."""
    matching = select(Practice.state).where(*_practice_filter(state=None, text=text))
    if cap is not None:
        matching = matching.limit(cap + 1)
    inner = matching.subquery()
    query = select(inner.c.state, func.count()).group_by(inner.c.state)
    return {str(state): int(n) for state, n in session.exec(query).all()}


def practice_names(session: Session, *, ids: Sequence[int | None]) -> dict[int, str]:
    """The recorded names of these practices, for tables that show ids."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = session.exec(select(Practice.id, Practice.practice_name).where(col(Practice.id).in_(wanted))).all()
    return {int(i): name for i, name in rows}


# --- tickets --------------------------------------------------------------------------------------


def tickets_page(session: Session, *, statuses: Sequence[TicketStatus], kind: TicketKind | None = None,
                 practice_id: int | None = None, cursor: str | None = None, limit: int = 50) -> Page[Ticket]:
    """Tickets in id order (oldest first), the page after ``cursor``."""
    limit = _limit(limit)
    query = select(Ticket).where(col(Ticket.status).in_(list(statuses)))
    if kind is not None:
        query = query.where(Ticket.kind == kind)
    if practice_id is not None:
        query = query.where(Ticket.practice_id == practice_id)
    after = _id_cursor(cursor)
    if after is not None:
        query = query.where(col(Ticket.id) > after)
    rows = list(session.exec(query.order_by(col(Ticket.id)).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1].id) if more and rows else None)


# --- the audit trail ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditKey:
    """Where an audit entry sits, newest first: its time, then decisions before the worker's rows,
    then the newer id first."""

    at: datetime
    source: int
    id: int

    def encode(self) -> str:
        raw = f"{self.at.isoformat()}|{self.source}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> AuditKey:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            at, source, id_ = raw.split("|")
            key = cls(datetime.fromisoformat(at), int(source), int(id_))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise BadInput(f"not a cursor from the audit trail: {cursor[:40]!r}") from None
        if key.at.tzinfo is None or key.source not in (_DECISION, _RECONCILIATION):
            raise BadInput(f"not a cursor from the audit trail: {cursor[:40]!r}")
        return key


def _older_than(at: Any, id_: Any, source: int, key: AuditKey) -> ColumnElement[bool]:
    """Rows of one source that come after ``key`` in the newest-first order."""
    if source == key.source:
        return tuple_(at, id_) < tuple_(key.at, key.id)  # one index range on (at, id)
    if source == _RECONCILIATION:  # the key is a decision: the worker's rows at that instant follow it
        return at <= key.at
    return at < key.at  # the key is the worker's: decisions at that instant came before it


def audit_page(session: Session, *, actor: str | None = None, action: str | None = None,
               practice_id: int | None = None, since: datetime | None = None, until: datetime | None = None,
               operator_changes: bool = False, cursor: str | None = None, limit: int = 50) -> Page[AuditEntry]:
    """Reconciliations (actor ``worker``) and people's decisions, newest first, ``since <= at < until``,
    the page after ``cursor``. Each source is read through its own index, ``limit + 1`` rows at most.
    ``operator_changes``: only the decisions that changed an operator (``OPERATOR_CHANGES``; the worker
    changes none), beside any other filter."""
    limit = _limit(limit)
    key = AuditKey.decode(cursor) if cursor else None
    streams: list[list[tuple[AuditKey, AuditEntry]]] = []

    if (actor is None or actor == WORKER_ACTOR) and not operator_changes:
        started, rid = col(Reconciliation.started_at), col(Reconciliation.id)
        query = select(Reconciliation).where(col(Reconciliation.actor).is_(None))
        where = _common(started, col(Reconciliation.practice_id), col(Reconciliation.action),
                        practice_id=practice_id, action=action, since=since, until=until)
        if key is not None:
            where.append(_older_than(started, rid, _RECONCILIATION, key))
        rows = session.exec(query.where(*where).order_by(started.desc(), rid.desc()).limit(limit + 1)).all()
        streams.append([(AuditKey(r.started_at, _RECONCILIATION, r.id), _reconciliation_entry(r))  # type: ignore[arg-type]
                        for r in rows])
    if actor != WORKER_ACTOR:
        at, did = col(OperatorDecision.at), col(OperatorDecision.id)
        where = _common(at, col(OperatorDecision.practice_id), col(OperatorDecision.action),
                        practice_id=practice_id, action=action, since=since, until=until)
        if actor is not None:
            where.append(col(OperatorDecision.actor) == actor)
        if operator_changes:
            where.append(col(OperatorDecision.action).in_(sorted(OPERATOR_CHANGES)))
        if key is not None:
            where.append(_older_than(at, did, _DECISION, key))
        rows = session.exec(select(OperatorDecision).where(*where).order_by(at.desc(), did.desc())
                            .limit(limit + 1)).all()
        streams.append([(AuditKey(d.at, _DECISION, d.id), _decision_entry(d)) for d in rows])  # type: ignore[arg-type]

    merged = list(heapq.merge(*streams, key=lambda pair: (pair[0].at, pair[0].source, pair[0].id), reverse=True))
    shown = merged[:limit]
    more = len(merged) > limit
    return Page([entry for _, entry in shown], shown[-1][0].encode() if more and shown else None)


def _common(at: Any, practice: Any, action_column: Any, *, practice_id: int | None, action: str | None,
            since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if practice_id is not None:
        where.append(practice == practice_id)
    if action:
        where.append(action_column == action)
    if since is not None:
        where.append(at >= since)
    if until is not None:
        where.append(at < until)
    return where


def audit_pages(session: Session, *, at_most: int | None = None, page: int = 500, **filters: Any) -> list[AuditEntry]:
    """Every entry the filters keep (the newest ``at_most``), newest first, a keyset page at a time."""
    out: list[AuditEntry] = []
    cursor: str | None = None
    while at_most is None or len(out) < at_most:
        want = page if at_most is None else min(page, at_most - len(out))
        got = audit_page(session, cursor=cursor, limit=want, **filters)
        out.extend(got.items)
        if got.next_cursor is None:
            break
        cursor = got.next_cursor
    return out


"""Data access for practices, their GUID history, control flags, tickets and audit records.

``SqlStore`` is the one way to these tables: one unit of work over one session, shaped as the use
cases' port (``reconciler.usecases.ports.Store``) and holding the reads the console and the command
line make besides. Each query is written once, in the method that runs it: the tickets' in
``TicketStore`` (``reconciler.adapters.tickets``), which ``SqlStore`` is made of. Above the class are
only what its methods share: the keyset walk, the statements a reconciliation runs (built once per
process), and the query builders ``bench/audit_year.py`` also EXPLAINs (``guard_switches_query``,
``practice_reconciliations_query``). The keyset pages of the long lists live in
``reconciler.adapters.listings``. Nothing here commits but ``SqlStore.commit``: the caller (the act
step, onboarding, a decision, an admin function) owns the one transaction. SQLAlchemy's errors stop
here: a lost race surfaces as ``Conflict``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (Date, Integer, and_, bindparam, case, cast, delete, exists, func, insert, literal, or_, text, tuple_,
                        update)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from models import Action, GuidHistory, Practice, PmsType, PracticeState, Reconciliation, Ticket, TicketStatus, Trigger
from models.guard import AUTOSWITCH_PAUSED, ControlFlag
from models.practice import PracticeOut
from models.types import UTCDateTime
from models.verification_day import ROUTINE_VERIFICATION_SQL, VerificationDay
from models.approval import Approval
from models.outbox import OutboxEvent
from models.decision import OperatorDecision
from reconciler.adapters import change_events
from reconciler.adapters.tickets import TicketStore
from reconciler.core.change import PracticeChange
from reconciler.core.errors import Conflict
from reconciler.core.policy import GuardState, Policy
from reconciler.core.identifiers import normalise_identifiers
from reconciler.core.errors import UnknownPractice
from reconciler.core.guids import parse_guid
from reconciler.core.retention import day_counts


def _keyset(session: Session, query: Any, *, order: Sequence[Any], key: Callable[[Any], tuple[Any, ...]],
            page: int = 500) -> Iterator[Any]:
    """Rows of ``query`` in ``order`` (unique, last column the primary key), a page at a time;
    ``key(row)`` gives a row's values of the ``order`` columns.

    Keyset pagination: each page starts after the previous page's last key, so memory and each
    query's cost stay constant however large the table (OFFSET would rescan the skipped rows).
    """
    last: tuple[Any, ...] | None = None
    while True:
        paged = query
        if last is not None:
            paged = paged.where(_after(order, last))
        rows = session.exec(paged.order_by(*order).limit(page)).all()
        if not rows:
            return
        yield from rows
        last = key(rows[-1])


def _after(order: Sequence[Any], last: tuple[Any, ...]) -> ColumnElement[bool]:
    """``(a, b, ...) > (last_a, last_b, ...)`` spelled so every database's planner uses the index."""
    clauses = []
    for i, column in enumerate(order):
        equal = [order[j] == last[j] for j in range(i)]
        clauses.append(and_(*equal, column > last[i]))
    return or_(*clauses)


# --- retention and the audit's hot queries ----------------------------------------------------


@dataclass(frozen=True)
class FoldedBatch:
    """One retention batch: rows folded, distinct practice-days they went into, the last key."""

    folded: int
    days: int
    last: tuple[datetime, int] | None


def _routine_before(before: datetime) -> list[ColumnElement[bool]]:
    # The predicate spelled exactly as the partial index's, so PostgreSQL can use the index.
    return [text(ROUTINE_VERIFICATION_SQL), col(Reconciliation.started_at) < before]


def _key(key: tuple[datetime, int]) -> Any:
    # Typed binds: SQLite stores UTC naive, and an untyped aware datetime would compare as text.
    return tuple_(literal(key[0], UTCDateTime()), literal(key[1], Integer()))


def _fold_in_postgres(session: Session, doomed: Any, days: Any, last: Any) -> FoldedBatch:
    """The same fold as one statement: the DELETE's rows, counted by UTC day, upserted in key order
    (two passes upserting the same days cannot deadlock), without 5,000 rows crossing to Python."""
    gone = doomed.returning(Reconciliation.__table__.c.practice_id, Reconciliation.__table__.c.started_at,
                            Reconciliation.__table__.c.id).cte("gone")
    day = cast(func.timezone("UTC", gone.c.started_at), Date)
    per_day = (select(gone.c.practice_id, day, func.count()).group_by(gone.c.practice_id, day)
               .order_by(gone.c.practice_id, day))
    # PostgreSQL's dialect package only where PostgreSQL runs (~26 ms of every SQLite start-up: models/types.py).
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    upsert = pg_insert(days).from_select(["practice_id", "day", "count"], per_day)
    added = (upsert.on_conflict_do_update(index_elements=["practice_id", "day"],
                                          set_={"count": days.c.count + upsert.excluded.count})
             .returning(days.c.practice_id).cte("added"))
    newest = select(gone.c.started_at, gone.c.id).order_by(gone.c.started_at.desc(), gone.c.id.desc()).limit(1).cte("newest")
    folded, day_rows, newest_at, newest_id = session.connection().execute(select(
        select(func.count()).select_from(gone).scalar_subquery(),
        select(func.count()).select_from(added).scalar_subquery(),
        select(newest.c.started_at).scalar_subquery(),
        select(newest.c.id).scalar_subquery(),
    )).one()
    if not folded:
        return FoldedBatch(0, 0, None)
    return FoldedBatch(folded, day_rows, tuple(last) if last is not None else (newest_at, newest_id))


def guard_switches_query(*, since: datetime, since_resume: bool = False) -> Any:
    """The mass-change guard's count: automatic switches since ``since`` (index on action, started_at).

    ``since_resume``: only those made after a person last resumed automatic switching (RUNBOOK §5: the
    switches that paused it are not counted again, or the first switch after a resume pauses it anew)."""
    query = (select(func.count()).select_from(Reconciliation)
             .where(Reconciliation.action == Action.SWITCHED, Reconciliation.trigger != Trigger.MANUAL,
                    col(Reconciliation.started_at) >= since))
    if since_resume:
        resumed_later = exists().where(col(ControlFlag.name) == AUTOSWITCH_PAUSED, col(ControlFlag.enabled).is_(False),
                                       col(ControlFlag.updated_at) > col(Reconciliation.started_at))
        query = query.where(~resumed_later)
    return query


def practice_reconciliations_query(*, practice_id: int, limit: int | None = None) -> Any:
    """A practice's reconciliations newest first: its page (``limit``) or its whole audit."""
    query = (select(Reconciliation).where(Reconciliation.practice_id == practice_id)
             .order_by(col(Reconciliation.started_at).desc(), col(Reconciliation.id).desc()))
    return query.limit(limit) if limit is not None else query


# --- the store the use cases see ----------------------------------------------------------------

# Written even when unchanged: they say when the run happened.
_ALWAYS_WRITTEN = frozenset({"last_verified_at", "updated_at", "last_verdict"})
_MISSING = object()


# A reconciliation's three statements, built once per process: building SQLAlchemy's statement
# objects (and their cache keys) anew on every run was a fifth of a run's CPU (docs/BENCHMARKS.md,
# "reconcile"). The values are bound parameters; the compiled forms stay in the engine's cache.
_AUDIT_COLUMNS = tuple(c.name for c in Reconciliation.__table__.columns if c.name != "id")
_INSERT_AUDIT = insert(Reconciliation.__table__).returning(Reconciliation.__table__.c.id)
_UPDATE_DETACHED_PRACTICE = update(Practice.__table__).where(
    Practice.__table__.c.id == bindparam("at_id"), Practice.__table__.c.version == bindparam("at_version"))


@functools.cache
def _practice_for_run() -> tuple[Any, tuple[str, ...]]:
    """``SqlStore.practice_for_run``'s SELECT, a Core one over the practice's columns (built on first
    use: the mappers are configured by then), and the names of those columns, in order."""
    practices, history = Practice.__table__, GuidHistory.__table__  # type: ignore[attr-defined]
    unresolved = col(Ticket.status).in_((TicketStatus.OPEN, TicketStatus.ACKNOWLEDGED))
    own = exists().where(col(Ticket.practice_id) == practices.c.id, unresolved).label("own")
    wide = exists().where(col(Ticket.practice_id).is_(None), unresolved).label("wide")
    statement = (sa_select(*practices.columns, *_period_columns(), own, wide, *_guard_columns())
                 .select_from(practices.outerjoin(history, history.c.practice_id == practices.c.id))
                 .where(practices.c.id == bindparam("practice_id")))
    return statement, tuple(column.key for column in practices.columns)


@functools.cache
def _practice_manager() -> Any:
    """What builds a ``Practice`` as the ORM's loading does. The mappers are configured first: a
    process whose first statement is a run's Core read has built no ORM object yet, and an instance
    made before that has attributes that cannot be read."""
    configure_mappers()
    return manager_of_class(Practice)


def _guard_columns() -> tuple[Any, Any]:
    """The mass-change guard's two reads: the automatic switches since ``:since`` made after the last
    resume, and the pause flag (``SqlStore.guard_state``'s SELECT, and a run's read carries them too)."""
    paused = exists().where(col(ControlFlag.name) == AUTOSWITCH_PAUSED, col(ControlFlag.enabled).is_(True))
    since = bindparam("since", type_=Reconciliation.__table__.c.started_at.type)
    return guard_switches_query(since=since, since_resume=True).scalar_subquery(), paused


@functools.cache
def _guard_state() -> Any:
    """``SqlStore.guard_state``'s SELECT, built once as well."""
    return select(*_guard_columns())


def _period_columns() -> tuple[Any, ...]:
    """A GUID period as a run's read and a switch's closing UPDATE return it: (valid_from, id, guid,
    valid_until, reason), which sorts oldest first."""
    history = GuidHistory.__table__  # type: ignore[attr-defined]
    return history.c.valid_from, history.c.id, history.c.guid, history.c.valid_until, history.c.reason


@functools.cache
def _switch_statements() -> tuple[Any, Any]:
    """``SqlStore.switch_history``'s two GUID-history statements, built once as well: the closing UPDATE
    (every period of the practice, the open one gets ``:now``; RETURNING the whole history) and the new
    period's INSERT, executed in place rather than built per switch and flushed from an ORM object."""
    history = GuidHistory.__table__
    now = bindparam("now", type_=history.c.valid_until.type)
    close = (update(history).where(history.c.practice_id == bindparam("at_practice_id"))
             .values(valid_until=case((history.c.valid_until.is_(None), now), else_=history.c.valid_until))
             .returning(*_period_columns()))
    return close, insert(history)


# What change_events writes into an outbox row; every other column is NULL until delivery. None is
# left to a Python-side default: the statement with the CTE got NULL for ``status``'s.
_EVENT_COLUMNS = ("event_id", "event_type", "target", "status", "payload", "created_at", "next_attempt_at",
                  "attempts")
# What a new GUID period is written with (``SqlStore._switch_rows`` makes the row).
_NEW_PERIOD_COLUMNS = ("practice_id", "guid", "valid_from", "valid_until", "reason")


@functools.cache
def _open_period_with_event() -> Any:
    """PostgreSQL: the new period's INSERT and its change event's, one statement (a data-modifying
    CTE; SQLite has none, so there the two are executed one after the other). The period's parameters
    are ``_switch_statements``' INSERT's; the event's, the outbox row's columns."""
    history, outbox = GuidHistory.__table__, OutboxEvent.__table__  # type: ignore[attr-defined]
    opened = insert(history).values(**{name: bindparam(name, type_=history.c[name].type)
                                       for name in _NEW_PERIOD_COLUMNS})
    event = insert(outbox).values(**{name: bindparam(name, type_=outbox.c[name].type) for name in _EVENT_COLUMNS})
    return event.add_cte(opened.cte("opened"))


def _changed_values(practice: Practice, change: PracticeChange) -> dict[str, Any]:
    """The columns a change writes: those whose value the practice does not already have, and the
    ones that say when the run happened."""
    return {k: v for k, v in change.values.items() if k in _ALWAYS_WRITTEN or getattr(practice, k, _MISSING) != v}


def _newly_held(practice: Practice, change: PracticeChange) -> bool:
    """A hold is news when the practice was not held, or is now held for another proposal."""
    return change.values.get("state") == PracticeState.HELD and (
        practice.state != PracticeState.HELD or practice.proposed_guid != change.values.get("proposed_guid"))


@functools.lru_cache(maxsize=64)
def _run_at_once(columns: tuple[str, ...], *, switch: bool) -> Any:
    """PostgreSQL: a reconciliation's write as one statement (``SqlStore.write_run``), built once per
    set of practice columns written. The practice's UPDATE, guarded by its version, is a CTE every
    other part selects from: only when it wrote its row does a switch close the open GUID period,
    open the new one and write its change event, and the audit row is written (its id the one row the
    statement returns). Parameters: ``at_id``/``at_version``, ``set_<column>``, ``audit_<column>``; a
    switch's ``now``, ``period_<column>``, ``event_<column>``."""
    practices, history = Practice.__table__, GuidHistory.__table__  # type: ignore[attr-defined]
    outbox, audits = OutboxEvent.__table__, Reconciliation.__table__  # type: ignore[attr-defined]
    written = (update(practices)
               .where(practices.c.id == bindparam("at_id"), practices.c.version == bindparam("at_version"))
               .values({name: bindparam(f"set_{name}", type_=practices.c[name].type) for name in columns})
               .returning(practices.c.id).cte("written"))

    def insert_if_written(table: Any, names: Sequence[str], prefix: str) -> Any:
        # A SELECT's parameters have no column to take their type from: each is cast to its column's.
        values = [cast(bindparam(f"{prefix}{name}", type_=table.c[name].type), table.c[name].type) for name in names]
        return insert(table).from_select(list(names), sa_select(*values).select_from(written))

    parts = [written]
    if switch:
        now = bindparam("now", type_=history.c.valid_until.type)
        parts.append(update(history).where(history.c.practice_id.in_(sa_select(written.c.id)),
                                           history.c.valid_until.is_(None)).values(valid_until=now).cte("closed"))
        parts.append(insert_if_written(history, _NEW_PERIOD_COLUMNS, "period_").cte("opened"))
        parts.append(insert_if_written(outbox, _EVENT_COLUMNS, "event_").cte("event"))
    return insert_if_written(audits, _AUDIT_COLUMNS, "audit_").returning(audits.c.id).add_cte(*parts)


class SqlStore(TicketStore):
    """One unit of work over one session: what ``reconciler.usecases.ports.Store`` asks for, and the
    reads the console and the command line make besides. Each query is written once: here, or for
    tickets in ``TicketStore`` (``reconciler.adapters.tickets``), which this class is made of."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._written: dict[int, dict[str, Any]] = {}  # practice id -> the values written in this unit of work

    # reading
    def practice(self, practice_id: int) -> Practice:
        practice = self.session.get(Practice, practice_id)
        if practice is None:
            raise UnknownPractice(f"no practice with id {practice_id}")
        return practice

    def practice_by_pms(self, pms_type: PmsType, pms_id: str) -> Practice | None:
        return self.session.exec(
            select(Practice).where(Practice.pms_type == pms_type, Practice.pms_id == pms_id)
        ).first()

    def practice_by_guid(self, guid: str) -> Practice | None:
        """The practice whose current GUID is ``guid``, else the one that had it before."""
        guid = parse_guid(guid)
        current = self.session.exec(select(Practice).where(Practice.halo_guid == guid).order_by(Practice.id)).first()
        if current is not None:
            return current
        past = self.session.exec(
            select(GuidHistory.practice_id)
            .where(GuidHistory.guid == guid)
            .order_by(col(GuidHistory.valid_from).desc())
        ).first()
        return self.session.get(Practice, past) if past is not None else None

    def detach(self, practice: Practice) -> Practice:
        self.session.expunge(practice)
        return practice

    def previous_guids(self, practice_id: int) -> dict[str, datetime]:
        """GUID → when the practice last switched away from it (a practice has a handful of rows)."""
        left: dict[str, datetime] = {}
        for row in self.guid_history(practice_id):
            if row.valid_until is not None and (row.guid not in left or row.valid_until > left[row.guid]):
                left[row.guid] = row.valid_until
        return left

    def practice_for_run(self, practice_id: int, *, switches_since: datetime
                         ) -> tuple[Practice, dict[str, datetime], bool, bool, tuple[int, bool], tuple[Any, ...]]:
        """The practice, detached, with what a reconciliation reads besides it, in one statement: the
        GUIDs it left (GUID → when it last left it), whether any unresolved ticket of its own, and
        any integrator-wide one, exists (when none does, the act step spends no query resolving), the
        mass-change guard's counts (the automatic switches since ``switches_since``, and whether
        automatic switching is paused), which ``guard_state`` takes for an infrastructure change, and
        its GUID periods oldest first (``_period_columns``): a switch's change event carries them, and
        the practice's version, which every GUID change raises, guards them as it guards the rest.

        Each GUID period adds a row (a practice has a handful); the EXISTS are answered by the tickets'
        practice_id index, the guard's count by the audit's (action, started_at) index; each is
        computed once and is the same on every row."""
        statement, names = _practice_for_run()
        rows = self._read_alone(statement, {"practice_id": practice_id, "since": switches_since}).all()
        if not rows:
            raise UnknownPractice(f"no practice with id {practice_id}")
        width = len(names)
        # Built from the row's columns, never in this session (a Core SELECT: no ORM load, identity map
        # or expunge, about a fifth of a run's CPU): the caller holds it detached, as before. Built as
        # the ORM's loading builds an instance, the values straight into its dict: SQLModel's
        # constructor sets each column through the attribute instrumentation (34 us against 1.4 us).
        practice = _practice_manager().new_instance()
        practice.__dict__.update(zip(names, rows[0][:width]))
        rest = width + len(_period_columns())  # then own, wide, the guard's count and its pause flag
        periods = sorted(tuple(row[width:rest]) for row in rows if row[width + 1] is not None)  # an id: a period
        left: dict[str, datetime] = {}
        for _, _, guid, until, _ in periods:
            if until is not None and (guid not in left or until > left[guid]):
                left[guid] = until
        own, wide, switches, paused = rows[0][rest:rest + 4]
        return practice, left, bool(own), bool(wide), (switches, bool(paused)), tuple(periods)

    def _read_alone(self, statement: Any, params: dict[str, Any]) -> Any:
        """One read that is a transaction of its own (a run's read before Halo is asked, a switch's
        guard before Get site status: the run ends each at once) in autocommit: no BEGIN and no
        ROLLBACK round trip around the one statement, which sees the same committed rows. Inside a
        transaction this session already holds, it is read there, as any statement."""
        if self.session.in_transaction():
            return self.session.execute(statement, params)
        return self._autocommit(statement, params)

    def _autocommit(self, statement: Any, params: dict[str, Any]) -> Any:
        """One statement as a transaction of its own: no BEGIN, no COMMIT or ROLLBACK round trip."""
        return self.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"}).execute(statement, params)

    def guid_history(self, practice_id: int) -> Sequence[GuidHistory]:
        """Oldest first, the current GUID last."""
        return self.session.exec(
            select(GuidHistory)
            .where(GuidHistory.practice_id == practice_id)
            .order_by(col(GuidHistory.valid_from), col(GuidHistory.id))
        ).all()

    def flag(self, name: str) -> ControlFlag | None:
        """The flag if it is set, else None."""
        row = self.session.get(ControlFlag, name)
        return row if row is not None and row.enabled else None

    def guard_state(self, *, now: datetime, policy: Policy, counted: tuple[int, bool] | None = None) -> GuardState:
        """The mass-change guard as it stands at ``now``. ``counted``: the switches in the window and
        the pause flag, already read (a run's read carries them: ``practice_for_run``), so that only
        the fleet's size may be left to read."""
        if counted is None:
            since = now - timedelta(seconds=policy.mass_change_window_seconds)
            counted = self._read_alone(_guard_state(), {"since": since}).one()  # the count and the flag in one
        switches, is_paused = counted
        # The limit is max(min, fraction x fleet) >= min: below min the fleet size cannot matter, and
        # counting 100,000 practices on every switch would.
        onboarded = self.count_practices() if switches >= policy.mass_change_min else 0
        return GuardState(autoswitch_paused=bool(is_paused), switches_in_window=switches,
                          onboarded_practices=onboarded)

    # writing
    def write_practice(self, practice: Practice, values: dict[str, Any]) -> None:
        """``UPDATE practices ... WHERE id = ? AND version = ?``; no row means someone else won."""
        values = {**values, "version": practice.version + 1}
        self._written.setdefault(practice.id, {}).update(values)  # type: ignore[arg-type]
        # A detached practice (a reconciliation's, read before Halo was asked) has no object in this
        # session to keep in step: a Core UPDATE skips the ORM's bulk-update bookkeeping. An attached
        # one (a decision's) goes through the ORM, which updates the object in place.
        if practice in self.session:
            statement = (update(Practice).where(col(Practice.id) == practice.id, col(Practice.version) == practice.version)
                         .values(**values))
            result = self.session.execute(statement)
        else:
            # The statement is built once per process; the SET clause comes from the parameters' names.
            result = self.session.execute(_UPDATE_DETACHED_PRACTICE,
                                          {**values, "at_id": practice.id, "at_version": practice.version})
        if result.rowcount != 1:
            raise Conflict(f"practice {practice.id} changed since version {practice.version}")

    def switch_history(self, practice: Practice, new_guid: str, *, reason: str, now: datetime) -> None:
        """Close the current GUID's period, open ``new_guid``'s, and write ``practice.guid_changed``
        (every GUID change passes here: automatic, approved, paired).

        The closing UPDATE touches every period of the practice (the open one gets ``now``, the rest
        keep their value) so that its RETURNING hands back the whole history the event carries: no
        read of its own. A practice has had a handful of GUIDs. On PostgreSQL the new period and the
        event are one statement (``_open_period_with_event``)."""
        close, open_ = _switch_statements()
        closed = sorted(self.session.execute(close, {"at_practice_id": practice.id, "now": now}).all())
        period, event = self._switch_rows(practice, closed, new_guid, reason=reason, now=now)
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(_open_period_with_event(), {**period, **event})
            change_events.written(event)
        else:
            self.session.execute(open_, period)
            change_events.add(self.session, event)

    def _switch_rows(self, practice: Practice, closed: Sequence[Any], new_guid: str, *, reason: str, now: datetime,
                     written: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """A switch's new GUID period and its ``practice.guid_changed`` outbox row, from the practice's
        periods as closing the open one leaves them (``_period_columns`` rows, oldest first)."""
        period = {"practice_id": practice.id, "guid": new_guid, "valid_from": now, "valid_until": None, "reason": reason}
        history = [SimpleNamespace(guid=g, valid_from=f, valid_until=u, reason=r) for f, _, g, u, r in closed]
        history.append(SimpleNamespace(**period))
        event = change_events.guid_changed(practice=self._as_written(practice, history, written), now=now,
                                           old_guid=closed[-1][2] if closed else None, new_guid=new_guid, reason=reason)
        return period, event

    def _as_written(self, practice: Practice, history: Sequence[Any], written: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        """The practice's JSON as this unit of work wrote it (a reconciliation's practice is detached:
        the values ``write_practice`` wrote, or ``written``, are laid over it)."""
        written = self._written.get(practice.id, {}) if written is None else written  # type: ignore[arg-type]
        view = SimpleNamespace(**{name: written.get(name, getattr(practice, name)) for name in PracticeOut.model_fields
                                  if name != "guid_history"})
        return PracticeOut.from_rows(view, list(history)).to_json()  # type: ignore[arg-type]

    def set_flag(self, name: str, enabled: bool, *, now: datetime, reason: str | None = None) -> None:
        row = self.session.get(ControlFlag, name) or ControlFlag(name=name)
        row.enabled = enabled
        row.reason = reason
        row.updated_at = now
        self.session.add(row)

    def apply_change(self, practice: Practice, change: PracticeChange, *, now: datetime,
                     own_tickets: bool = True, integrator_tickets: bool = True) -> int | None:
        """Everything one verdict changes; returns the first ticket it opened or counted.

        ``own_tickets`` / ``integrator_tickets`` False: the caller read (``practice_for_run``) that no
        such unresolved ticket existed, so resolving them is skipped. One opened since by the report
        path stays open until the next verification, which is the safe side: the run did not see the
        403s that opened it, and an integrator-wide one is too recent to resolve anyway (it was seen
        within the quiet window). Columns whose value the practice already has are not written."""
        self.write_practice(practice, _changed_values(practice, change))
        if _newly_held(practice, change):
            history = self.guid_history(practice.id)  # type: ignore[arg-type]
            change_events.add(self.session, change_events.held(
                practice=self._as_written(practice, history), now=now, proposed_guid=change.values.get("proposed_guid"),
                reason=str(change.values.get("last_verdict") or "")))
        if change.switch_to:
            self.switch_history(practice, change.switch_to, reason=change.history_reason, now=now)
        ticket_id = None
        for spec in change.tickets:
            ticket = self.open_ticket(kind=spec.kind, reason=spec.reason, detail=spec.detail, now=now,
                                      practice_id=None if spec.integrator_wide else practice.id)
            ticket_id = ticket_id or ticket.id
        if change.pause_autoswitch:
            self.set_flag(AUTOSWITCH_PAUSED, True, now=now, reason="mass-change guard")
        if change.resolve and own_tickets:
            self.resolve_tickets(practice_id=practice.id, reasons=change.resolve, now=now)
        if change.resolve_integrator_wide and integrator_tickets:
            self.resolve_tickets(practice_id=None, reasons=change.resolve_integrator_wide, now=now,
                                 last_seen_before=change.integrator_wide_quiet_since)
        return ticket_id

    def write_run(self, practice: Practice, change: PracticeChange, audit: Reconciliation, *, now: datetime,
                  own_tickets: bool = True, integrator_tickets: bool = True,
                  periods: Sequence[Any] | None = None) -> int | None:
        """A reconciliation's whole write, committed: ``apply_change``, then the audit row (its
        ``ticket_id`` the first ticket the change opened or counted; ``audit.id`` is set), then the
        commit. Returns that ticket's id. ``Conflict`` (nothing written): the practice moved since it
        was read, or a ticket or flag did.

        On PostgreSQL, a change that opens, counts, resolves and holds nothing (an unchanged
        verification, a switch: nearly every run) is one statement (``_run_at_once``), given the GUID
        periods the run read with the practice (``practice_for_run``) for a switch's change event; the
        rest, and SQLite, take the statements one by one. The rows are the same either way."""
        if (periods is not None and self.session.get_bind().dialect.name == "postgresql"
                and not self.session.in_transaction() and not change.tickets and not change.pause_autoswitch
                and not (change.resolve and own_tickets)
                and not (change.resolve_integrator_wide and integrator_tickets)
                and not _newly_held(practice, change)):
            self._write_at_once(practice, change, audit, now=now, periods=periods)
            return None
        try:
            ticket_id = self.apply_change(practice, change, now=now, own_tickets=own_tickets,
                                          integrator_tickets=integrator_tickets)
            audit.ticket_id = ticket_id
            self.add_audit(audit)
            self.commit()
        except Conflict:
            self.rollback()
            raise
        return ticket_id

    def _write_at_once(self, practice: Practice, change: PracticeChange, audit: Reconciliation, *, now: datetime,
                       periods: Sequence[Any]) -> None:
        """``write_run``'s one statement, in autocommit: a single statement is its own transaction, so
        neither BEGIN nor COMMIT costs a round trip. No row back: the version moved."""
        values = {**_changed_values(practice, change), "version": practice.version + 1}
        params = {"at_id": practice.id, "at_version": practice.version,
                  **{f"set_{name}": value for name, value in values.items()},
                  **{f"audit_{name}": getattr(audit, name) for name in _AUDIT_COLUMNS}}
        event = None
        if change.switch_to:
            # The periods as the statement's closing leaves them: the open one ends ``now``.
            closed = [(f, i, g, now if u is None else u, r) for f, i, g, u, r in periods]
            period, event = self._switch_rows(practice, closed, change.switch_to, reason=change.history_reason,
                                              now=now, written=values)
            params.update({"now": now, **{f"period_{k}": v for k, v in period.items()},
                           **{f"event_{k}": v for k, v in event.items()}})
        statement = _run_at_once(tuple(sorted(values)), switch=change.switch_to is not None)
        try:
            audit_id = self._autocommit(statement, params).scalar_one_or_none()
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)[:200]) from None
        if audit_id is None:
            raise Conflict(f"practice {practice.id} changed since version {practice.version}")
        audit.id = audit_id
        if event is not None:
            change_events.written(event)

    def due_retry_ids(self, *, now: datetime, page: int = 1000) -> Iterator[int]:
        """Practices whose backoff has run out, soonest due first."""
        query = select(Practice.next_attempt_at, Practice.id).where(col(Practice.next_attempt_at) <= now)
        for _, practice_id in _keyset(self.session, query, order=[col(Practice.next_attempt_at), col(Practice.id)],
                                      key=tuple, page=page):
            yield practice_id

    def never_verified_ids(self, *, page: int = 1000) -> Iterator[int]:
        query = select(Practice.id).where(col(Practice.last_verified_at).is_(None))
        yield from _keyset(self.session, query, order=[col(Practice.id)], key=lambda practice_id: (practice_id,),
                           page=page)

    def stale_practice_ids(self, *, cutoff: datetime, page: int = 1000) -> Iterator[int]:
        """Practices last verified before ``cutoff``, oldest first."""
        query = select(Practice.last_verified_at, Practice.id).where(col(Practice.last_verified_at) < cutoff)
        for _, practice_id in _keyset(self.session, query,
                                      order=[col(Practice.last_verified_at), col(Practice.id)], key=tuple, page=page):
            yield practice_id

    def add_audit(self, audit: Reconciliation) -> Reconciliation:
        """Insert the audit row with one Core INSERT ... RETURNING id (no unit-of-work flush: nothing
        reads the row back through this session); ``audit.id`` is set from it."""
        values = {name: getattr(audit, name) for name in _AUDIT_COLUMNS}
        audit.id = self.session.execute(_INSERT_AUDIT, values).scalar_one()
        return audit

    # people's decisions (use cases: decisions)
    def add_decision(self, decision: OperatorDecision) -> OperatorDecision:
        self.session.add(decision)
        self.session.flush()
        return decision

    def approvals(self, practice_id: int, *, fingerprint: str) -> list[str]:
        return list(self.session.exec(
            select(Approval.actor).where(Approval.practice_id == practice_id, Approval.fingerprint == fingerprint)
            .order_by(col(Approval.at), col(Approval.id))).all())

    def add_approval(self, practice_id: int, *, fingerprint: str, actor: str, now: datetime) -> None:
        self.session.add(Approval(practice_id=practice_id, fingerprint=fingerprint, actor=actor, at=now))
        self.session.flush()

    def discard_approvals(self, practice_id: int, *, keep: str | None = None) -> None:
        query = delete(Approval).where(Approval.practice_id == practice_id)
        if keep is not None:
            query = query.where(Approval.fingerprint != keep)
        self.session.execute(query)

    def add_practice(self, *, pms_type: PmsType, pms_id: str, halo_guid: str, identifiers: dict[str, Any],
                     now: datetime, availability: str | None = None) -> Practice:
        """Record a newly onboarded practice and the first entry of its GUID history; a concurrent
        insert of the same one is a ``Conflict``."""
        practice = Practice(
            pms_type=pms_type,
            pms_id=pms_id,
            halo_guid=parse_guid(halo_guid),
            practice_name=str(identifiers.get("practice_name") or ""),
            identifiers=dict(identifiers),
            identifiers_normalised=normalise_identifiers(identifiers),
            availability=availability,
            last_verified_at=now,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.session.begin_nested():
                self.session.add(practice)
                self.session.flush()
                self.session.add(GuidHistory(practice_id=practice.id, guid=practice.halo_guid, valid_from=now,
                                             reason="onboarded"))
                self.session.flush()
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)[:200]) from None
        return practice

    def count_practices(self) -> int:
        return self.session.exec(select(func.count()).select_from(Practice)).one()

    def first_guid(self) -> str | None:
        """The current GUID of the first practice onboarded (None: none yet)."""
        return self.session.exec(select(Practice.halo_guid).order_by(Practice.id).limit(1)).first()

    def iter_practices(self, *, batch: int = 500) -> Iterator[Practice]:
        """Every practice in id order, a page at a time (constant memory)."""
        for n, practice in enumerate(_keyset(self.session, select(Practice), order=[col(Practice.id)],
                                             key=lambda p: (p.id,), page=batch), 1):
            yield practice
            if n % batch == 0:
                self.session.expunge_all()

    def held_practices(self, *, limit: int) -> list[Practice]:
        """Held practices, the longest held first (the console's overview)."""
        return list(self.session.exec(select(Practice).where(Practice.state == PracticeState.HELD)
                                      .order_by(col(Practice.updated_at)).limit(limit)).all())

    def guid_histories(self, practice_ids: Sequence[int]) -> dict[int, list[GuidHistory]]:
        """GUID histories of many practices in one query (for listings)."""
        result: dict[int, list[GuidHistory]] = {pid: [] for pid in practice_ids}
        if not practice_ids:
            return result
        rows = self.session.exec(
            select(GuidHistory)
            .where(col(GuidHistory.practice_id).in_(practice_ids))
            .order_by(col(GuidHistory.practice_id), col(GuidHistory.valid_from), col(GuidHistory.id))
        ).all()
        for row in rows:
            result[row.practice_id].append(row)
        return result

    def practice_out(self, practice: Practice) -> PracticeOut:
        """The practice as the API, the command line and the console show it (with its GUID history)."""
        return PracticeOut.from_rows(practice, list(self.guid_history(practice.id)))  # type: ignore[arg-type]

    def count_routine_verifications(self, *, before: datetime) -> int:
        return self.session.exec(select(func.count()).select_from(Reconciliation).where(*_routine_before(before))).one()

    def fold_routine_verifications(self, *, before: datetime, after: tuple[datetime, int] | None,
                                   limit: int) -> FoldedBatch:
        """Fold the next ``limit`` routine verifications started before ``before`` (in (started_at, id)
        order, after the key ``after``) into ``verification_days``. The caller commits: one batch, one
        short transaction that locks only the rows it deletes and the day rows it adds to.

        The counts come from the rows the DELETE itself returned: a pass running beside this one (two
        beats) waits on the same rows and finds them gone, so no verification is counted twice.
        """
        session = self.session
        keyed = select(Reconciliation.started_at, Reconciliation.id).where(*_routine_before(before))
        if after is not None:
            keyed = keyed.where(tuple_(col(Reconciliation.started_at), col(Reconciliation.id)) > _key(after))
        order = (col(Reconciliation.started_at), col(Reconciliation.id))
        last = session.exec(keyed.order_by(*order).offset(limit - 1).limit(1)).first()
        doomed = delete(Reconciliation.__table__).where(*_routine_before(before))
        if after is not None:
            doomed = doomed.where(tuple_(*order) > _key(after))
        if last is not None:
            doomed = doomed.where(tuple_(*order) <= _key(tuple(last)))
        days = VerificationDay.__table__
        if session.get_bind().dialect.name == "postgresql":
            return _fold_in_postgres(session, doomed, days, last)
        # Core statements: the ORM would try to keep objects in the session in step with 5,000 deletes.
        gone = session.connection().execute(doomed.returning(Reconciliation.practice_id, Reconciliation.started_at,
                                                             Reconciliation.id)).all()
        if not gone:
            return FoldedBatch(0, 0, None)
        counts = day_counts((practice_id, started_at) for practice_id, started_at, _ in gone)
        upsert = sqlite_insert(days)
        session.connection().execute(
            upsert.on_conflict_do_update(index_elements=["practice_id", "day"],
                                         set_={"count": days.c.count + upsert.excluded.count}),
            [{"practice_id": p, "day": d, "count": n} for p, d, n in counts])
        newest = max((started_at, rid) for _, started_at, rid in gone)
        return FoldedBatch(len(gone), len(counts), tuple(last) if last is not None else newest)

    def reconciled_practice_ids(self, practice_ids: Sequence[int]) -> set[int]:
        """Which of these practices have at least one reconciliation."""
        return set(self.session.exec(select(Reconciliation.practice_id)
                                     .where(col(Reconciliation.practice_id).in_(practice_ids))).all())

    def all_reconciliations(self) -> Sequence[Reconciliation]:
        """Every reconciliation in id order (a demo's few dozen; a fleet's audit is read a page at a time
        through ``reconciler.adapters.listings``)."""
        return self.session.exec(select(Reconciliation).order_by(col(Reconciliation.id))).all()

    def last_reconciliation(self, practice_id: int) -> Reconciliation | None:
        """The practice's latest reconciliation that asked Halo (what Halo answered and when)."""
        return self.session.exec(
            select(Reconciliation).where(Reconciliation.practice_id == practice_id, Reconciliation.halo_calls > 0)
            .order_by(col(Reconciliation.started_at).desc(), col(Reconciliation.id).desc()).limit(1)
        ).first()

    def verification_days(self, practice_id: int) -> Sequence[VerificationDay]:
        """A practice's folded routine checks, newest day first."""
        return self.session.exec(select(VerificationDay).where(VerificationDay.practice_id == practice_id)
                                 .order_by(col(VerificationDay.day).desc())).all()

    def practice_reconciliations(self, practice_id: int, *, limit: int | None = None) -> Sequence[Reconciliation]:
        """A practice's reconciliations newest first: its page (``limit``) or its whole audit."""
        return self.session.exec(practice_reconciliations_query(practice_id=practice_id, limit=limit)).all()

    def commit(self) -> None:
        try:
            self.session.commit()
        except IntegrityError as exc:
            self.session.rollback()
            raise Conflict(str(exc.orig)[:200]) from None

    def rollback(self) -> None:
        self.session.rollback()
        self._written.clear()  # none of it stands: a retry's change event must not show a lost write's values

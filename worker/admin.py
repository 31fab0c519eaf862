"""The admin API: what an operator can do, as plain functions.

The command line calls these, and so can ``celery -A worker shell`` or a Python prompt::

    >>> from worker import admin
    >>> admin.practice(guid="0b6c...")          # by any GUID it ever had
    >>> admin.reconcile_now(42).verdict
    >>> admin.approve(42)

Each function opens its own unit of work and returns plain output records (``PracticeOut``,
``TicketOut``, ``ReconcileResult``), never live ORM rows.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace as dataclass_replace
from datetime import UTC, date, datetime, time as clock_time, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from models import Action, PmsType, Practice, PracticeState, TicketKind, TicketStatus, Trigger
from models.guard import AUTOSWITCH_PAUSED
from models.practice import PracticeOut
from models.ticket import TicketOut
from models.operator import OperatorOut
from models.outbox import OutboxOut, OutboxStatus, OutboxTarget
from reconciler import logs
from reconciler.adapters import listings, outbox_rows, people, tickets
from reconciler.adapters.store import SqlStore
from reconciler.core.errors import BadInput, Busy, CoordinationUnavailable, OperationFailed, UnknownPractice
from reconciler.core.guids import parse_guid
from reconciler.core.people import parse_actor, parse_note, parse_operator_name, parse_role
from reconciler.core.vocabulary import DecisionAction, SkipReason
from reconciler.usecases import decisions, retention, sweep
from reconciler.usecases.onboarding import onboard_practice, parse_pairing_code, parse_request
from reconciler.usecases.reconcile import ReconcileResult, after_run, reconcile
from worker import db
from worker.config import get_settings

if TYPE_CHECKING:
    from sqlmodel import Session

log = logs.get_logger()

# How long an operator's run waits for a worker's run of the same practice to finish.
CLAIM_WAIT_SECONDS = 30.0


def _now() -> datetime:
    return datetime.now(UTC)


def _wiring() -> ModuleType:
    """The clients (Redis, httpx, Celery's publisher, metrics, Apprise) for the functions that use them:
    reading practices or tickets needs only the database (start-up time of the command line)."""
    from worker import wiring  # the clients only where used (start-up time)

    return wiring


# The one unit of work (``worker.db``): nothing is written unless the function commits.
unit_of_work = db.unit_of_work


def deliver_tickets() -> None:
    """Send ticket events to the webhook now; whatever fails stays in the outbox for the worker."""
    _wiring().deliver_outbox()


def parse_pms_type(value: str) -> PmsType:
    try:
        return PmsType(value.strip())
    except ValueError:
        names = ", ".join(t.value for t in PmsType)
        raise BadInput(f"unknown PMS type {value.strip()[:40]!r}: expected one of {names}") from None


def find_practice(
    store: SqlStore,
    practice_id: int | None = None,
    *,
    guid: str | None = None,
    pms_type: str | None = None,
    pms_id: str | None = None,
) -> Practice:
    """Resolve the ``(ID | --guid GUID | --pms-type T --pms-id ID)`` selector."""
    given = (practice_id is not None) + (guid is not None) + (pms_type is not None or pms_id is not None)
    if given != 1:
        raise BadInput("name the practice by exactly one of: ID, --guid GUID, or --pms-type T --pms-id ID")
    if practice_id is not None:
        return store.practice(practice_id)
    if guid is not None:
        canonical = parse_guid(guid)
        practice = store.practice_by_guid(canonical)
        if practice is None:
            raise UnknownPractice(f"no practice has or had the GUID {canonical}")
        return practice
    if pms_type is None or pms_id is None:
        raise BadInput("--pms-type and --pms-id go together")
    kind = parse_pms_type(pms_type)
    practice = store.practice_by_pms(kind, pms_id.strip())
    if practice is None:
        raise UnknownPractice(f"no {kind} practice with PMS ID {pms_id.strip()!r}")
    return practice


# --- practices ----------------------------------------------------------------------------------


def onboard(pms_type: str, pms_id: str, pairing_code: str | None = None) -> PracticeOut:
    """Find the practice's authoritative site, pair with it (``pairing_code`` for a Best Practice
    site that is not paired yet) and record it. Through the fleet-wide rate limiter."""
    settings = get_settings()
    request = parse_request(pms_type, pms_id, pairing_code)
    with unit_of_work() as session, _wiring().build_halo_client(settings, rate_limited=True) as client:
        store = SqlStore(session)
        practice = onboard_practice(store, client, request, now=_now(), identifier_query=settings.identifier_query)
        session.commit()
        out = store.practice_out(practice)
    index_guids(out.id, out.halo_guid, [])
    return out


def index_guids(practice_id: int, current: str, past: list[str]) -> None:
    """Tell the coordination store which practice a GUID belongs to (best effort: the hook's lookup
    path repairs a missing entry from the database)."""
    try:
        _wiring().guid_index().index(practice_id, current, past)
    except CoordinationUnavailable as exc:
        log.warning("guid_index_update_failed", practice_id=practice_id, error=str(exc))


def practice(practice_id: int | None = None, **selector: Any) -> PracticeOut:
    with unit_of_work() as session:
        store = SqlStore(session)
        return store.practice_out(find_practice(store, practice_id, **selector))


def practices() -> list[PracticeOut]:
    with unit_of_work() as session:
        store = SqlStore(session)
        rows = list(store.iter_practices())
        histories = store.guid_histories([p.id for p in rows])  # type: ignore[misc]
        return [PracticeOut.from_rows(p, histories[p.id]) for p in rows]  # type: ignore[index]


T = TypeVar("T")


@dataclass(frozen=True)
class Listing(Generic[T]):
    """One page of a list: its rows, the cursor of the next page (None: the last), the names of the
    practices its rows name, and for practices how many matched in each state."""

    items: list[T]
    next_cursor: str | None
    names: dict[int, str] = field(default_factory=dict)
    counts: dict[str, int] | None = None
    counts_cap: int | None = None  # a search counts up to this many matches

    @property
    def total(self) -> int | None:
        return sum(self.counts.values()) if self.counts is not None else None

    @property
    def capped(self) -> bool:
        """The counts stopped at the cap: more matched than they say."""
        return self.counts_cap is not None and (self.total or 0) > self.counts_cap


def parse_state(value: str | None) -> PracticeState | None:
    if not value:
        return None
    try:
        return PracticeState(value.strip())
    except ValueError:
        names = ", ".join(s.value for s in PracticeState)
        raise BadInput(f"unknown practice state {value.strip()[:40]!r}: expected one of {names}") from None


def parse_time_bound(value: str | None, *, end: bool = False) -> datetime | None:
    """``2026-12-04`` or an ISO time (UTC when it names no zone). A bare date as the end of a range
    means the end of that day: ``--until 2026-12-04`` keeps the 4th."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, clock_time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"not a date or time: {text[:40]!r} (expected 2026-12-04 or 2026-12-04T09:30)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def practices_listing(*, state: str | None = None, text: str | None = None, cursor: str | None = None,
                      limit: int = 50, counts: bool = False) -> Listing[PracticeOut]:
    """A page of practices in id order (one state's, or matching a search), each with its GUID history."""
    state_ = parse_state(state)
    with unit_of_work() as session:
        page = listings.practices_page(session, state=state_, text=text, cursor=cursor, limit=limit)
        histories = SqlStore(session).guid_histories([p.id for p in page.items])  # type: ignore[misc]
        outs = [PracticeOut.from_rows(p, histories.get(p.id, [])) for p in page.items]  # type: ignore[arg-type]
        cap = listings.SEARCH_COUNT_CAP if (text or "").strip() else None
        by_state = listings.count_practices_by_state(session, text=text, cap=cap) if counts else None
    return Listing(outs, page.next_cursor, {o.id: o.practice_name for o in outs}, by_state, cap)


def tickets_listing(status: str | None = None, kind: str | None = None, *, cursor: str | None = None,
                    limit: int = 50) -> Listing[TicketOut]:
    """A page of tickets in id order; no ``status``: open and acknowledged."""
    statuses, kind_ = _ticket_filter(status, kind)
    with unit_of_work() as session:
        page = listings.tickets_page(session, statuses=statuses, kind=kind_, cursor=cursor, limit=limit)
        names = listings.practice_names(session, ids=[t.practice_id for t in page.items])
        return Listing([TicketOut.from_row(t) for t in page.items], page.next_cursor, names)


def audit_listing(practice_id: int | None = None, *, actor: str | None = None, action: str | None = None,
                  since: str | None = None, until: str | None = None, operator_changes: bool = False,
                  cursor: str | None = None, limit: int = 50) -> Listing[people.AuditEntry]:
    """A page of the audit trail, newest first, filtered by practice, actor, action and dates, or to
    changes to operators only."""
    filters = _audit_filters(actor, action, since, until, operator_changes)
    with unit_of_work() as session:
        page = listings.audit_page(session, practice_id=practice_id, cursor=cursor, limit=limit, **filters)
        names = listings.practice_names(session, ids=[e.practice_id for e in page.items])
        return Listing(page.items, page.next_cursor, names)


def practice_names(ids: list[int | None]) -> dict[int, str]:
    with unit_of_work() as session:
        return listings.practice_names(session, ids=ids)


def _audit_filters(actor: str | None, action: str | None, since: str | None, until: str | None,
                   operator_changes: bool = False) -> dict[str, Any]:
    return {"actor": (actor or "").strip()[:128] or None, "action": (action or "").strip()[:32] or None,
            "since": parse_time_bound(since), "until": parse_time_bound(until, end=True),
            "operator_changes": operator_changes}


def _ticket_filter(status: str | None, kind: str | None) -> tuple[list[TicketStatus], TicketKind | None]:
    try:
        statuses = [TicketStatus(status)] if status else list(tickets.UNRESOLVED)
        kind_ = TicketKind(kind) if kind else None
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return statuses, kind_


def current_guid(guid: str) -> str | None:
    """The GUID an application should use now, given any GUID the practice ever had (None if unknown)."""
    with unit_of_work() as session:
        found = SqlStore(session).practice_by_guid(parse_guid(guid))
        return found.halo_guid if found else None


# --- reconciliation -----------------------------------------------------------------------------


def reconcile_now(practice_id: int | None = None, *, take_over: bool = False, by: str | None = None,
                  note: str | None = None, **selector: Any) -> ReconcileResult:
    """Run a reconciliation in this process, at once (backoff and a refused key do not stop it),
    through the work queue's claim like the worker's: a run of the same practice there is waited for.
    ``take_over``: end whatever claim holds the practice first (a worker host died holding it), recorded
    in the audit trail as ``taken_over`` by ``by``."""
    actor, note = who(by, note) if take_over else (None, None)
    with unit_of_work() as session:
        target: int = find_practice(SqlStore(session), practice_id, **selector).id  # type: ignore[assignment]
    if take_over:
        token = _wiring().work_queue().take_over(target)
        with unit_of_work() as session:
            decisions.record_take_over(SqlStore(session), practice_id=target, token=token, now=_now(),
                                       actor=actor, note=note)  # type: ignore[arg-type]
            session.commit()
    result = reconcile(target, trigger=Trigger.MANUAL, deps=_wiring().reconcile_deps(), wait_seconds=CLAIM_WAIT_SECONDS,
                       operator=True)
    _after_run(result)
    return result


def _after_run(result: ReconcileResult, *, deliver: bool = True) -> None:
    """The worker's after-run steps (``reconcile.after_run``) for a run in this process: a follow-up is
    published to the workers, the outbox delivered here (``deliver``: False while a sweep goes on)."""
    after_run(result, queue=_wiring().work_queue, publish=_follow_up_publisher(result.practice_id),
              deliver=deliver_tickets if deliver else (lambda: None), in_process=True)


def _follow_up_publisher(practice_id: int) -> Callable[[float | None], Any]:
    def publish(countdown: float | None) -> None:
        try:
            _send("halo.reconcile_practice", [practice_id, str(Trigger.FORBIDDEN)], "reconcile", countdown=countdown)
        except _broker_unreachable() as exc:
            raise CoordinationUnavailable(f"the follow-up was not published: {type(exc).__name__}") from exc

    return publish


def _broker_unreachable() -> type[Exception]:
    from kombu.exceptions import OperationalError  # kombu only once something was published (start-up time)

    return OperationalError


def _send(name: str, args: list[Any] | None = None, queue: str = "reconcile", **kwargs: Any) -> str:
    """Publish a task by name: the shell knows tasks by their names, not by importing them."""
    from worker.celery_app import app, ensure_broker  # the Celery app only for the commands that publish

    ensure_broker()
    return app.send_task(name, args=args, queue=queue, **kwargs).id


def who(by: str | None = None, note: str | None = None) -> tuple[str, str | None]:
    """The decision's actor (default: the operating-system user running this) and note, checked."""
    if by is None:
        try:
            by = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER: say so rather than guess
            raise BadInput("could not tell who you are: pass --by NAME") from None
    return parse_actor(by), parse_note(note)


def approve(practice_id: int, *, by: str | None = None, note: str | None = None) -> PracticeOut:
    """Approve a held change after asking Halo again; raises ``OperationFailed`` (exit 1) saying what
    changed when Halo no longer shows the proposal (the practice is then re-held or released)."""
    actor, note = who(by, note)
    settings = get_settings()
    db.ensure_schema()
    with _wiring().build_halo_client(settings, rate_limited=True) as client:
        decided = decisions.approve(_wiring().unit_of_work, client, practice_id=practice_id, now=_now(),
                                    policy=_wiring().policy(settings), identifier_query=settings.identifier_query,
                                    actor=actor, note=note, required=settings.approvals_required)
    return _decided(decided, "approve")


def approvals(practice_id: int) -> dict[str, Any]:
    """Who approved a held change so far, and how many approvals it needs in all."""
    with unit_of_work() as session:
        store = SqlStore(session)
        practice = store.practice(practice_id)
        if practice.state != "held" or not practice.proposed_guid:
            return {"required": 0, "approved_by": []}
        given = store.approvals(practice_id, fingerprint=decisions.proposal_fingerprint(store, practice))
        return {"required": decisions.approvals_required(practice, get_settings().approvals_required),
                "approved_by": given}


def pair(practice_id: int, pairing_code: str, *, by: str | None = None, note: str | None = None) -> PracticeOut:
    """Complete a change held for ``pairing_required`` with the practice's pairing code."""
    actor, note = who(by, note)
    code = parse_pairing_code(pairing_code)
    if code is None:
        raise BadInput("the pairing code is empty")
    settings = get_settings()
    db.ensure_schema()
    with _wiring().build_halo_client(settings, rate_limited=True) as client:
        decided = decisions.pair(_wiring().unit_of_work, client, practice_id=practice_id, pairing_code=code, now=_now(),
                                 actor=actor, note=note)
    return _decided(decided, "pair")


def _decided(decided: decisions.Decided, verb: str) -> PracticeOut:
    with unit_of_work() as session:
        store = SqlStore(session)
        out = store.practice_out(store.practice(decided.practice.id))  # type: ignore[arg-type]
    if decided.done:
        index_guids(out.id, out.halo_guid, [p.guid for p in out.guid_history])
    deliver_tickets()
    if not decided.done and not decided.approvals_missing:
        raise OperationFailed(f"{verb} did not switch practice {out.id}: {decided.message}")
    return out


def reject(practice_id: int, *, by: str | None = None, note: str | None = None) -> PracticeOut:
    actor, note = who(by, note)
    with unit_of_work() as session:
        store = SqlStore(session)
        row = decisions.reject(store, practice_id=practice_id, now=_now(), actor=actor, note=note)
        session.commit()
        out = store.practice_out(row)
    deliver_tickets()
    return out


# --- tickets ------------------------------------------------------------------------------------


def list_tickets(status: str | None = None, kind: str | None = None) -> list[TicketOut]:
    statuses, kind_ = _ticket_filter(status, kind)
    with unit_of_work() as session:
        return [TicketOut.from_row(t) for t in SqlStore(session).list_tickets(statuses=statuses, kind=kind_)]


def acknowledge_ticket(ticket_id: int, *, by: str | None = None, note: str | None = None) -> TicketOut:
    actor, note = who(by, note)
    with unit_of_work() as session:
        row = decisions.acknowledge_ticket(SqlStore(session), ticket_id=ticket_id, now=_now(), actor=actor, note=note)
        session.commit()
        out = TicketOut.from_row(row)
    deliver_tickets()
    return out


def resolve_ticket(ticket_id: int, *, by: str | None = None, note: str | None = None) -> TicketOut:
    actor, note = who(by, note)
    with unit_of_work() as session:
        row = decisions.resolve_ticket(SqlStore(session), ticket_id=ticket_id, now=_now(), actor=actor, note=note)
        session.commit()
        out = TicketOut.from_row(row)
    deliver_tickets()
    return out


# --- the mass-change guard ----------------------------------------------------------------------


def autoswitch(action: str, *, by: str | None = None, note: str | None = None) -> dict[str, Any]:
    if action not in {"status", "pause", "resume"}:
        raise BadInput(f"unknown autoswitch action {action!r}: expected status, pause or resume")
    with unit_of_work() as session:
        store = SqlStore(session)
        if action != "status":
            actor, note = who(by, note)
            decisions.set_autoswitch(store, paused=action == "pause", now=_now(), actor=actor, note=note)
            session.commit()
        flag = store.flag(AUTOSWITCH_PAUSED)
        return {
            "paused": flag is not None,
            "reason": flag.reason if flag else None,
            "since": flag.updated_at.isoformat() if flag else None,
        }


def enqueue_reconcile(practice_id: int | None = None, **selector: Any) -> str:
    """Queue a reconciliation for the worker; returns the Celery task id. It passes the gates as any
    queued work does (``reconcile --now`` is the operator's way through them)."""
    with unit_of_work() as session:
        target = find_practice(SqlStore(session), practice_id, **selector).id
    return _send("halo.reconcile_practice", [target, str(Trigger.MANUAL)], "reconcile")


# --- sweeps -------------------------------------------------------------------------------------


def sweep_now(older_than_seconds: int | None = None, progress_factory=None) -> sweep.SweepSummary:
    """Reconcile every stale practice and every due retry in this process, one claim at a time."""
    settings = get_settings()
    older = timedelta(seconds=settings.sweep_stale_after_seconds if older_than_seconds is None else older_than_seconds)
    deps = _wiring().reconcile_deps(settings)
    with unit_of_work() as session:
        planned = list(sweep.plan(SqlStore(session), now=_now(), older_than=older))
    progress = progress_factory(len(planned)) if progress_factory else (lambda: None)

    def run(practice_id: int, trigger: Trigger) -> ReconcileResult:
        try:
            result = reconcile(practice_id, trigger=trigger, deps=deps, wait_seconds=CLAIM_WAIT_SECONDS)
        except Busy:
            return ReconcileResult(practice_id=practice_id, trigger=trigger, verdict=None, action=Action.NONE,
                                   skipped=SkipReason.BUSY)
        _after_run(result, deliver=False)
        return result

    summary = sweep.sweep_now(planned, reconcile=run, progress=progress)
    deliver_tickets()
    return summary


def enqueue_sweep(older_than_seconds: int | None = None) -> str:
    return _send("halo.sweep", queue="sweep", kwargs={"older_than_seconds": older_than_seconds, "scheduled": False})


def run_retention(*, dry_run: bool = False) -> retention.RetentionSummary:
    """One whole retention pass in this process (the beat's pass is bounded; this one is not), and
    the notification rows nobody can deliver dropped."""
    summary = retention.apply_retention(_wiring().unit_of_work, policy=_wiring().retention_policy(), now=_now(),
                                        monotonic=time.monotonic, dry_run=dry_run)
    return dataclass_replace(summary, outbox_dropped=_wiring().drop_unheard_notifications(dry_run=dry_run))
# --- the outbox: deliveries people can see --------------------------------------------------------


def outbox_events(status: str | None = None, *, limit: int = 100, before_id: int | None = None,
                  undelivered: bool = False, configured_only: bool = False) -> list[OutboxOut]:
    """Webhook and notification events, newest first (``outbox list``); ``undelivered``: pending and
    failed ones only (when no ``status`` is given); ``configured_only``: for the targets this
    deployment sends to."""
    wanted = outbox_rows.parse_status(status)
    targets = get_settings().outbox_targets if configured_only else None
    with unit_of_work() as session:
        return [OutboxOut.from_row(r) for r in outbox_rows.list_events(
            session, status=wanted, limit=limit, before_id=before_id, undelivered=undelivered, targets=targets)]


def outbox_unsent_elsewhere() -> dict[str, int]:
    """Undelivered events of targets that are not configured, by target (they wait for nobody)."""
    with unit_of_work() as session:
        return outbox_rows.unsent_elsewhere(session, targets=get_settings().outbox_targets)


def retry_outbox(event_id: int, *, by: str | None = None) -> OutboxOut:
    """Send one pending or failed event now. Unknown id: ``BadInput`` (exit 2); the sink refused it
    again: ``OperationFailed`` (exit 1), saying why; delivered before: nothing to do (returned)."""
    with unit_of_work() as session:
        row = outbox_rows.get_event(session, event_id=event_id)
        target, status = OutboxTarget(row.target), row.status
    report = None
    if status != OutboxStatus.DELIVERED:
        report = _wiring().retry_outbox_event(event_id, target)
        log.info("outbox_event_retried", event_id=event_id, target=str(target), delivered=report.sent == 1, by=by)
    with unit_of_work() as session:
        out = OutboxOut.from_row(outbox_rows.get_event(session, event_id=event_id))
    if out.status != OutboxStatus.DELIVERED and report is not None and not report.sent and not report.failed:
        raise OperationFailed(f"outbox event {event_id} is being sent by a worker at this moment; "
                              "look again with `outbox list` in a few seconds")
    if out.status != OutboxStatus.DELIVERED:
        raise OperationFailed(f"outbox event {event_id} was refused again by the {out.target}: {out.last_error}")
    return out


def outbox_waiting() -> list[outbox_rows.Waiting]:
    with unit_of_work() as session:
        return outbox_rows.waiting(session, targets=get_settings().outbox_targets)


# --- the audit trail and the console's operators ------------------------------------------------


def audit(practice_id: int | None = None, *, limit: int | None = None, actor: str | None = None,
          action: str | None = None, since: str | None = None, until: str | None = None,
          operator_changes: bool = False) -> list[people.AuditEntry]:
    """Every reconciliation (actor ``worker``) and every person's decision, newest first (the filters
    keep those of one actor, action, practice or date range; ``operator_changes``, the changes to
    operators only)."""
    if limit is not None and limit < 1:
        raise BadInput("--limit must be at least 1")
    filters = _audit_filters(actor, action, since, until, operator_changes)
    with unit_of_work() as session:
        if practice_id is not None:
            SqlStore(session).practice(practice_id)  # unknown: bad input
        return listings.audit_pages(session, practice_id=practice_id, at_most=limit, **filters)


def _operator_actor(by: str | None, note: str | None) -> tuple[str, str | None]:
    """Who manages an operator, and why. As for every decision the default is the operating-system
    user; a process with no name for its user (a container run with a bare ``--user UID``) is named
    by its uid rather than refused, so the first ``operators add`` of a deployment still works."""
    if by is None:
        try:
            return who(None, note)
        except BadInput:
            by = f"uid {os.getuid()}"
    return who(by, note)


def _operator_changed(session: Session, action: DecisionAction, name: str, *, actor: str, note: str | None,
                      detail: str | None = None) -> None:
    decisions.record_operator_change(SqlStore(session), action, operator=name, now=_now(), actor=actor, note=note,
                                     detail=detail)


def add_operator(name: str, role: str, password: str, *, by: str | None = None,
                 note: str | None = None) -> OperatorOut:
    """A console operator, with an argon2 hash of the password (never the password itself)."""
    name, role_ = parse_operator_name(name), parse_role(role)
    actor, note = _operator_actor(by, note)
    from reconciler.adapters.passwords import hash_password  # argon2 only for `operators add` (start-up time)

    password_hash = hash_password(password)
    with unit_of_work() as session:
        row = people.add_operator(session, name=name, role=str(role_), password_hash=password_hash, now=_now())
        _operator_changed(session, DecisionAction.OPERATOR_ADDED, name, actor=actor, note=note,
                          detail=f"role {role_}")
        session.commit()
        out = OperatorOut.model_validate(row, from_attributes=True)
    log.info("operator_added", operator=name, role=str(role_), by=actor)
    return out


def list_operators() -> list[OperatorOut]:
    with unit_of_work() as session:
        return [OperatorOut.model_validate(o, from_attributes=True) for o in people.operators(session)]


def disable_operator(name: str, *, by: str | None = None, note: str | None = None) -> OperatorOut:
    """Stop someone signing in and end every session they have, at once (an admin's act)."""
    name = parse_operator_name(name)
    actor, note = _operator_actor(by, note)
    with unit_of_work() as session:
        row = people.disable_operator(session, name=name, now=_now())
        _operator_changed(session, DecisionAction.OPERATOR_DISABLED, name, actor=actor, note=note,
                          detail="signing in refused, sessions ended")
        session.commit()
        out = OperatorOut.model_validate(row, from_attributes=True)
    log.info("operator_disabled", operator=name, by=actor)
    return out


def enable_operator(name: str, *, by: str | None = None, note: str | None = None) -> OperatorOut:
    name = parse_operator_name(name)
    actor, note = _operator_actor(by, note)
    with unit_of_work() as session:
        row = people.enable_operator(session, name=name)
        _operator_changed(session, DecisionAction.OPERATOR_ENABLED, name, actor=actor, note=note)
        session.commit()
        out = OperatorOut.model_validate(row, from_attributes=True)
    log.info("operator_enabled", operator=name, by=actor)
    return out


def set_operator_role(name: str, role: str, *, by: str | None = None, note: str | None = None) -> OperatorOut:
    """Another role for an operator, from their next request on (the console reads it every time)."""
    name, role_ = parse_operator_name(name), parse_role(role)
    actor, note = _operator_actor(by, note)
    with unit_of_work() as session:
        row, before = people.set_role(session, name=name, role=str(role_))
        if before == str(role_):
            raise BadInput(f"{name} is {before} already")
        _operator_changed(session, DecisionAction.OPERATOR_ROLE_CHANGED, name, actor=actor, note=note,
                          detail=f"role {before} -> {role_}")
        session.commit()
        out = OperatorOut.model_validate(row, from_attributes=True)
    log.info("operator_role_changed", operator=name, role=str(role_), before=before, by=actor)
    return out


def reset_operator_password(name: str, password: str, *, by: str | None = None,
                            note: str | None = None) -> OperatorOut:
    """A new password; the operator's sessions end (they sign in again with it)."""
    name = parse_operator_name(name)
    actor, note = _operator_actor(by, note)
    from reconciler.adapters.passwords import hash_password  # argon2 only where a password is set (start-up time)

    password_hash = hash_password(password)
    with unit_of_work() as session:
        row = people.set_password(session, name=name, password_hash=password_hash)
        _operator_changed(session, DecisionAction.OPERATOR_PASSWORD_RESET, name, actor=actor, note=note,
                          detail="sessions ended")
        session.commit()
        out = OperatorOut.model_validate(row, from_attributes=True)
    log.info("operator_password_reset", operator=name, by=actor)
    return out


def unlock_operator(name: str, *, by: str | None = None, note: str | None = None) -> bool:
    """Lift the sign-in throttle's lock on a name at once; True when there was something to lift."""
    name = parse_operator_name(name)
    actor, note = _operator_actor(by, note)
    with unit_of_work() as session:
        lifted = people.throttle_clear(session, key=people.name_key(name))
        _operator_changed(session, DecisionAction.OPERATOR_UNLOCKED, name, actor=actor, note=note,
                          detail="sign-in lock lifted" if lifted else "was not locked: nothing to lift")
        session.commit()
    log.info("operator_unlocked", operator=name, by=actor, lifted=lifted)
    return lifted


def remove_operator(name: str, *, by: str | None = None, note: str | None = None) -> None:
    """Remove an operator; their past decisions keep their name in the audit trail."""
    name = parse_operator_name(name)
    actor, note = _operator_actor(by, note)
    with unit_of_work() as session:
        people.remove_operator(session, name=name)
        _operator_changed(session, DecisionAction.OPERATOR_REMOVED, name, actor=actor, note=note)
        session.commit()
    log.info("operator_removed", operator=name, by=actor)

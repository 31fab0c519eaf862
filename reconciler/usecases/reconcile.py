"""One reconciliation: resolve, compare, classify, act. Level-triggered: the 403 is evidence, not input.

``reconcile(practice_id, trigger=...)`` re-reads the practice, asks Halo (outside any transaction),
classifies with the pure core, decides with the policy and applies the decision in one transaction
guarded by the practice's version column. A concurrent writer makes our UPDATE match no row: we
re-read and re-decide with the same Halo answer, so two racing reconciliations cannot both switch.
Celery tasks, ``reconcile --now`` and the sweep all call this function.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models import Action, GuidHistory, Practice, PracticeState, Reconciliation, TicketKind, TicketReason, Trigger, Verdict
from models.guard import AUTOSWITCH_PAUSED, ControlFlag
from reconciler.adapters import store, tickets
from reconciler.core.classify import Classification, HaloAnswer, History, Recorded, classify
from reconciler.core.identifiers import normalise_identifiers
from reconciler.core.policy import Decision, GuardState, Policy, decide, next_backoff
from reconciler.core.selection import select_site
from reconciler.core.errors import InvalidState
from reconciler.adapters.halo_client import HaloClient
from reconciler.core.halo_errors import HaloError, HaloUnavailable
from reconciler.adapters.metrics import observe_reconciliation

log = structlog.get_logger()

KEY_REFUSED = "halo_key_refused"
MAX_CONFLICTS = 5
# Integrator-wide conditions that clear as soon as Halo answers a call normally.
INTEGRATOR_WIDE_REASONS = (TicketReason.IP_NOT_ALLOWED, TicketReason.QUOTA_EXCEEDED, TicketReason.UNAUTHORIZED)


class StaleVersion(Exception):
    """Another writer changed the practice since we read it."""


@dataclass(frozen=True)
class ReconcileResult:
    practice_id: int
    trigger: Trigger
    verdict: Verdict | None
    action: Action
    old_guid: str | None = None
    new_guid: str | None = None
    ticket_id: int | None = None
    reconciliation_id: int | None = None
    halo_calls: int = 0
    duration_ms: int = 0
    detail: str = ""
    skipped: str | None = None  # why nothing ran: "backoff" (not yet due), "key_refused"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("trigger", "verdict", "action"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


@dataclass
class Deps:
    """What a reconciliation needs from the outside world; tests pass their own."""

    client: HaloClient
    session_factory: Callable[[], Session]
    policy: Policy
    forbidden_count: Callable[[int, str, datetime | None], int] = lambda practice_id, guid, since: 0
    identifier_query: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    random: Callable[[], float] = random.random
    # Runs after the commit: keeps the coordination store's GUID index and freshness marks in step.
    after_commit: Callable[["ReconcileResult"], None] = lambda result: None
    # Runs as soon as Halo has answered (the work queue notes when, to tell answered reports apart).
    on_answer: Callable[[HaloAnswer], None] = lambda answer: None

    @classmethod
    def from_settings(cls) -> "Deps":
        from worker import db
        from worker.config import get_settings
        from worker import wiring

        settings = get_settings()
        return cls(
            client=wiring.halo_client(),
            session_factory=db.new_session,
            policy=Policy.from_settings(settings),
            forbidden_count=_ledger_counter(settings),
            identifier_query=settings.identifier_query,
            after_commit=_coordination_updater(settings),
        )


def _ledger_counter(settings: Any) -> Callable[[int, str, datetime | None], int]:
    """403 reports for a GUID since a time, read from the coordination store's ledger."""

    def count(practice_id: int, guid: str, since: datetime | None) -> int:
        from reconciler.adapters.coordination.ledger import ForbiddenLedger
        from worker.coordination import CoordinationUnavailable, get_redis

        try:
            ledger = ForbiddenLedger(get_redis(), window_seconds=settings.forbidden_window_seconds)
            return ledger.count(guid, since=since.timestamp() if since else None)
        except CoordinationUnavailable as exc:
            # Without the ledger we cannot tell persistence; the next run will.
            log.warning("forbidden_ledger_unavailable", practice_id=practice_id, error=str(exc))
            return 0

    return count


def _confirmation(result: "ReconcileResult") -> bool | None:
    if result.verdict is Verdict.UNCHANGED or result.action is Action.SWITCHED:
        return True
    if result.verdict in (Verdict.BUSINESS_CHANGE, Verdict.NOT_FOUND, Verdict.AMBIGUOUS, Verdict.FLAPPING,
                          Verdict.INFRASTRUCTURE_CHANGE):
        return False
    return None  # Halo did not answer for this practice: nothing learnt


def _coordination_updater(settings: Any) -> Callable[["ReconcileResult"], None]:
    def update_coordination(result: "ReconcileResult") -> None:
        from tasks.events import index_practice, note_verified
        from worker.coordination import CoordinationUnavailable, get_redis

        try:
            redis = get_redis()
            if result.action is Action.SWITCHED and result.new_guid and result.old_guid:
                index_practice(redis, result.practice_id, result.new_guid, [result.old_guid])
            note_verified(redis, result.practice_id, confirmed=_confirmation(result),
                          fresh_seconds=settings.verified_fresh_seconds)
        except CoordinationUnavailable as exc:
            # The index repairs itself on the next report (the lookup path); nothing is lost.
            log.warning("coordination_update_failed", practice_id=result.practice_id, error=str(exc))

    return update_coordination


# --- resolve ------------------------------------------------------------------------------------


def ask_halo(client: HaloClient, practice: Practice, identifier_query: str | None) -> HaloAnswer:
    """Find sites for the practice's PMS ID (and the identifier query on the candidate, if configured).

    Every Halo failure becomes part of the answer: the classifier decides what it means.
    """
    try:
        sites = tuple(client.find_sites(practice.pms_type, practice.pms_id))
    except HaloError as exc:
        return HaloAnswer(sites=None, error=exc)
    extra = None
    if identifier_query:
        candidate = select_site(sites).site
        if candidate is not None:
            try:
                result = client.immediate_query(candidate.id, identifier_query)
            except HaloError as exc:
                return HaloAnswer(sites=None, error=exc)
            extra = result.rows[0] if result.rows else {}
    return HaloAnswer(sites=sites, error=None, extra_identifiers=extra)


def summarise(answer: HaloAnswer) -> dict[str, Any]:
    """What the audit record keeps of Halo's answer: no headers, no key."""
    if answer.error is not None:
        err = answer.error
        summary: dict[str, Any] = {"error": type(err).__name__, "status": err.status, "message": err.message[:300]}
        if isinstance(err, HaloUnavailable) and err.retry_after is not None:
            summary["retry_after"] = err.retry_after
        cause = getattr(err, "cause", None)
        if cause is not None:
            summary["cause"] = str(cause)
        return summary
    summary = {"sites": [site.summary() for site in answer.sites or ()]}
    if answer.extra_identifiers is not None:
        summary["extra_identifiers"] = dict(answer.extra_identifiers)
    return summary


# --- read ---------------------------------------------------------------------------------------


def recorded_from(practice: Practice) -> Recorded:
    return Recorded(
        practice_id=practice.id,  # type: ignore[arg-type]
        halo_guid=practice.halo_guid,
        identifiers_normalised=dict(practice.identifiers_normalised),
        state=practice.state,
        proposed_guid=practice.proposed_guid,
        rejected_fingerprint=practice.rejected_fingerprint,
    )


def previous_guids(session: Session, practice_id: int) -> dict[str, datetime]:
    """GUID → when we last switched away from it (a practice has a handful of history rows)."""
    left: dict[str, datetime] = {}
    for row in store.guid_history(session, practice_id=practice_id):
        if row.valid_until is not None and (row.guid not in left or row.valid_until > left[row.guid]):
            left[row.guid] = row.valid_until
    return left


def guard_state(session: Session, *, now: datetime, policy: Policy) -> GuardState:
    paused = session.get(ControlFlag, AUTOSWITCH_PAUSED)
    switches = session.exec(
        select(func.count())
        .select_from(Reconciliation)
        .where(
            Reconciliation.action == Action.SWITCHED,
            Reconciliation.trigger != Trigger.MANUAL,
            col(Reconciliation.started_at) >= now - timedelta(seconds=policy.mass_change_window_seconds),
        )
    ).one()
    # The limit is max(min, fraction x fleet) >= min: below min the fleet size cannot matter, and
    # counting 100,000 practices on every switch would.
    onboarded = store.count_practices(session) if switches >= policy.mass_change_min else 0
    return GuardState(
        autoswitch_paused=paused is not None and paused.value == "true",
        switches_in_window=switches,
        onboarded_practices=onboarded,
    )


def is_key_refused(session: Session) -> bool:
    flag = session.get(ControlFlag, KEY_REFUSED)
    return flag is not None and flag.value == "true"


def set_flag(session: Session, name: str, value: bool, *, now: datetime, reason: str | None = None) -> None:
    flag = session.get(ControlFlag, name)
    if flag is None:
        flag = ControlFlag(name=name, value="false")
    flag.value = "true" if value else "false"
    flag.reason = reason
    flag.updated_at = now
    session.add(flag)


# --- act ----------------------------------------------------------------------------------------


def _write_practice(session: Session, practice: Practice, values: dict[str, Any]) -> None:
    """``UPDATE practices ... WHERE id = ? AND version = ?``; no row means someone else won."""
    values = {**values, "version": practice.version + 1}
    result = session.execute(
        update(Practice).where(col(Practice.id) == practice.id, col(Practice.version) == practice.version).values(**values)
    )
    if result.rowcount != 1:
        raise StaleVersion(f"practice {practice.id} changed since version {practice.version}")


def _switch_history(session: Session, practice: Practice, new_guid: str, *, reason: str, now: datetime) -> None:
    session.execute(
        update(GuidHistory)
        .where(col(GuidHistory.practice_id) == practice.id, col(GuidHistory.valid_until).is_(None))
        .values(valid_until=now)
    )
    session.add(GuidHistory(practice_id=practice.id, guid=new_guid, valid_from=now, reason=reason))  # type: ignore[arg-type]


def apply_decision(
    session: Session,
    practice: Practice,
    classification: Classification,
    decision: Decision,
    *,
    answer: HaloAnswer,
    trigger: Trigger,
    now: datetime,
    policy: Policy,
    rng: Callable[[], float],
) -> tuple[Reconciliation, int | None]:
    """Everything one verdict changes, in the caller's transaction. Raises StaleVersion on a lost race."""
    verdict = classification.verdict
    old_guid = practice.halo_guid
    values: dict[str, Any] = {"last_verdict": verdict, "updated_at": now}
    halo_answered = answer.error is None
    if halo_answered:
        values["last_verified_at"] = now
    if decision.switch_to:
        values.update(halo_guid=decision.switch_to, state=PracticeState.ACTIVE, proposed_guid=None, proposed_identifiers=None)
    elif decision.hold:
        values.update(
            state=PracticeState.HELD,
            proposed_guid=classification.new_guid or practice.halo_guid,
            proposed_identifiers=dict(classification.seen_identifiers),
        )
    elif verdict is Verdict.UNCHANGED:
        values.update(state=PracticeState.ACTIVE, proposed_guid=None, proposed_identifiers=None)
    if decision.backoff:
        attempts = practice.backoff_attempts
        values.update(
            backoff_attempts=attempts + 1,
            next_attempt_at=now + next_backoff(attempts, policy=policy, random=rng()),
        )
        if practice.state != PracticeState.HELD:
            values["state"] = PracticeState.BACKOFF
    elif decision.reset_backoff or halo_answered:
        values.update(backoff_attempts=0, next_attempt_at=None)
        if practice.state == PracticeState.BACKOFF and "state" not in values:
            values["state"] = PracticeState.ACTIVE
    _write_practice(session, practice, values)
    if decision.switch_to:
        _switch_history(session, practice, decision.switch_to, reason=str(verdict), now=now)
        log.info("guid_switched", practice_id=practice.id, old_guid=old_guid, new_guid=decision.switch_to)

    ticket_id = None
    if decision.ticket is not None:
        spec = decision.ticket
        ticket, _ = tickets.open_or_count(
            session,
            kind=spec.kind,
            reason=spec.reason,
            practice_id=None if spec.integrator_wide else practice.id,
            detail=spec.detail,
            now=now,
        )
        ticket_id = ticket.id
    if decision.trip_guard:
        set_flag(session, AUTOSWITCH_PAUSED, True, now=now, reason="mass-change guard")
        guard_ticket, _ = tickets.open_or_count(
            session,
            kind=TicketKind.CONTACT_HALO_SUPPORT,
            reason=TicketReason.MASS_CHANGE,
            practice_id=None,
            detail=(
                "More practices changed GUID within the hour than is plausible; automatic switching is paused "
                "and further changes are held. Check with Halo support, approve or reject the held practices, "
                "then run `halo-reconciler autoswitch resume`."
            ),
            now=now,
        )
        ticket_id = ticket_id or guard_ticket.id
    if decision.resolve_tickets:
        tickets.resolve_where(session, practice_id=practice.id, reasons=decision.resolve_tickets, now=now)
    if verdict is Verdict.UNAUTHORIZED:
        set_flag(session, KEY_REFUSED, True, now=now, reason="Halo answered 401")
    elif halo_answered:
        if is_key_refused(session):
            set_flag(session, KEY_REFUSED, False, now=now)
        tickets.resolve_where(session, practice_id=None, reasons=INTEGRATOR_WIDE_REASONS, now=now)

    audit = Reconciliation(
        practice_id=practice.id,  # type: ignore[arg-type]
        trigger=trigger,
        started_at=now,
        verdict=verdict,
        action=decision.action,
        old_guid=old_guid,
        new_guid=classification.new_guid,
        ticket_id=ticket_id,
        halo_answer=summarise(answer),
        detail=classification.reason[:2000],
    )
    session.add(audit)
    session.flush()
    return audit, ticket_id


# --- the whole run ------------------------------------------------------------------------------


def _gate(practice: Practice, session: Session, trigger: Trigger, now: datetime) -> str | None:
    """Why an automatic reconciliation should not spend a Halo call now (a manual one always runs)."""
    if trigger is Trigger.MANUAL:
        return None
    if is_key_refused(session):
        return "key_refused"
    if practice.next_attempt_at is not None and practice.next_attempt_at > now:
        return "backoff"
    return None


def reconcile(practice_id: int, *, trigger: Trigger, deps: Deps | None = None) -> ReconcileResult:
    deps = deps or Deps.from_settings()
    started = time.monotonic()
    now = deps.clock()
    with deps.session_factory() as session:
        practice = store.get_practice(session, practice_id=practice_id)
        skipped = _gate(practice, session, trigger, now)
        if skipped:
            log.info("reconcile_skipped", practice_id=practice_id, trigger=str(trigger), reason=skipped)
            return ReconcileResult(practice_id=practice_id, trigger=trigger, verdict=None, action=Action.NONE,
                                   old_guid=practice.halo_guid, skipped=skipped)
        session.expunge(practice)

    calls_before = deps.client.attempts
    answer = ask_halo(deps.client, practice, deps.identifier_query)
    halo_calls = deps.client.attempts - calls_before
    deps.on_answer(answer)

    for _ in range(MAX_CONFLICTS):
        now = deps.clock()
        with deps.session_factory() as session:
            practice = store.get_practice(session, practice_id=practice_id)
            recorded = recorded_from(practice)
            # 403s count toward persistence only after Halo confirmed the GUID in use ("verified
            # unchanged in between"): the reports that triggered the first look are not evidence.
            confirmed = practice.last_verdict in (Verdict.UNCHANGED, Verdict.INFRASTRUCTURE_CHANGE)
            history = History(
                previous_guids=previous_guids(session, practice_id),
                forbidden_reports_since_verified=deps.forbidden_count(
                    practice_id, practice.halo_guid, practice.last_verified_at
                ) if confirmed else 0,
            )
            classification = classify(recorded, answer, history, now=now, policy=deps.policy)
            # Every later line of this reconciliation (the task binds practice and task id) says what
            # it is about: the GUID in use, the one Halo proposes, the verdict.
            structlog.contextvars.bind_contextvars(old_guid=recorded.halo_guid, new_guid=classification.new_guid,
                                                   verdict=str(classification.verdict))
            guard = (
                guard_state(session, now=now, policy=deps.policy)
                if classification.verdict is Verdict.INFRASTRUCTURE_CHANGE
                else GuardState(autoswitch_paused=False, switches_in_window=0, onboarded_practices=0)
            )
            decision = decide(classification, recorded, policy=deps.policy, guard=guard, history=history)
            try:
                audit, ticket_id = apply_decision(
                    session, practice, classification, decision, answer=answer, trigger=trigger,
                    now=now, policy=deps.policy, rng=deps.random,
                )
                duration_ms = int((time.monotonic() - started) * 1000)
                audit.finished_at = deps.clock()
                audit.duration_ms = duration_ms
                audit.halo_calls = halo_calls
                session.add(audit)
                session.commit()
            except (StaleVersion, IntegrityError) as exc:
                # Another writer got there first (the practice's version, a ticket, a control flag):
                # re-read and re-decide with the same answer from Halo.
                session.rollback()
                log.info("reconcile_conflicted", practice_id=practice_id, conflict=type(exc).__name__)
                continue
            result = ReconcileResult(
                practice_id=practice_id,
                trigger=trigger,
                verdict=classification.verdict,
                action=decision.action,
                old_guid=recorded.halo_guid,
                new_guid=classification.new_guid,
                ticket_id=ticket_id,
                reconciliation_id=audit.id,
                halo_calls=halo_calls,
                duration_ms=duration_ms,
                detail=classification.reason,
            )
        deps.after_commit(result)
        observe_reconciliation(str(result.verdict), str(result.action))
        structlog.contextvars.unbind_contextvars("old_guid", "new_guid", "verdict")
        log.info("reconcile_finished", practice_id=practice_id, trigger=str(trigger), verdict=str(result.verdict),
                 action=str(result.action), old_guid=result.old_guid, new_guid=result.new_guid,
                 halo_calls=halo_calls, duration_ms=duration_ms)
        return result
    raise InvalidState(f"practice {practice_id} kept changing under us; gave up after {MAX_CONFLICTS} attempts")

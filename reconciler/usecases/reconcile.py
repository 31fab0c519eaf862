"""One reconciliation: claim, resolve, classify, verify, act, done. Level-triggered: the 403 is evidence, not input.

``reconcile(practice_id, trigger=..., deps=...)`` is the one path the Celery task, ``reconcile --now``
and ``sweep --now`` all take:

1. **claim** the practice in the work queue (one run per practice across every worker);
2. **gate**: an automatic run spends no Halo call while the practice waits for its backoff, or while
   the integrator-wide breaker is open (``reconciler.core.breaker``: the work is kept, and one run
   at a time probes on exponential backoff); an operator's run always goes on;
3. **resolve**: ask Halo (outside any transaction) and note that the practice has an answer;
4. **classify** with the pure core and **decide** with the policy;
5. **verify**: a decision to switch first asks Get site status on the new GUID (pairing a Zedmed
   or D4w site that is not paired with us) and is decided again with that answer (the core's
   ``verify_switch``): nothing is switched to without an ``active`` answer in this reconciliation;
6. **act**: apply the change in one transaction, only while the practice is still at the version
   read before Halo was asked. When it is not (another run switched it, a person decided), this
   answer may be older than that state: ask Halo again, at most ``MAX_ASKS`` times, so an old
   answer never overwrites a newer switch;
7. **done**: release the claim; the result says whether exactly one more run must follow. A refusal
   (401, IP, quota) trips the breaker; any other answer closes it, resolves its integrator-wide
   tickets and queues the work kept meanwhile, once per practice.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from models import Action, PmsType, Practice, Reconciliation, Trigger, Verdict
from reconciler import logs
from reconciler.core.breaker import Admission, is_breaker_verdict
from reconciler.core.change import INTEGRATOR_WIDE_REASONS, plan_change
from reconciler.core.classify import HaloAnswer, History, Recorded, classify, is_unpaired_answer, verify_switch
from reconciler.core.facts import SiteCheck
from reconciler.core.errors import Busy, Conflict, CoordinationUnavailable, InvalidState
from reconciler.core.halo_errors import HaloError, HaloUnavailable
from reconciler.core.policy import GuardState, Policy, decide
from reconciler.core.selection import select_site
from reconciler.core.vocabulary import SkipReason
from reconciler.core.work import Claim
from reconciler.core.breaker import BreakerState
from reconciler.usecases.claims import kept_alive
from reconciler.usecases.ports import Breaker, Coordination, Halo, Runs, UnitOfWork, WorkQueue

log = logs.get_logger()

MAX_CONFLICTS = 5
# Times one reconciliation asks Halo when the practice changed while it waited for the answer.
MAX_ASKS = 3
NO_GUARD = GuardState(autoswitch_paused=False, switches_in_window=0, onboarded_practices=0)


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
    skipped: SkipReason | None = None  # why no Halo call was spent
    again: bool = False  # a report arrived during the run that it did not answer: run once more
    released: tuple[int, ...] = ()  # practices kept while the breaker was open, queued again by this run
    past_guids: tuple[str, ...] = ()  # every GUID the practice left (the GUID index marks them stale)

    @property
    def current_guid(self) -> str | None:
        return self.new_guid if self.action is Action.SWITCHED else self.old_guid

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("past_guids")
        for key in ("trigger", "verdict", "action", "skipped"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


@dataclass
class Deps:
    """What a reconciliation needs from the outside world (``worker.wiring`` builds the real ones)."""

    halo: Halo
    unit_of_work: UnitOfWork
    policy: Policy
    queue: WorkQueue | None = None
    coordination: Coordination | None = None
    identifier_query: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    random: Callable[[], float] = random.random
    sleep: Callable[[float], None] = time.sleep
    # Told of every finished reconciliation (metrics).
    observe: Callable[[ReconcileResult], None] = lambda result: None
    # The integrator-wide breaker; None: no breaker (a test that asks Halo directly).
    breaker: Breaker | None = None
    # Queue one automatic run of a practice kept while the breaker was open (the queue's add, then a publish).
    requeue: Callable[[int], None] | None = None
    # This run's coordination folded into one call per moment (begin, answered, finish), built from these
    # deps; None: ``PortRuns``, a call to each port (the test fakes, a queue-less naive run).
    runs: Callable[[Deps], Runs] | None = None


@dataclass
class PortRuns:
    """``Runs`` over the separate ports, one call each, with each port's failure handled as it was."""

    queue: WorkQueue | None
    coordination: Coordination | None

    def begin(self, practice_id: int, token: str | None = None) -> tuple[Claim | None, list[BreakerState] | None,
                                                                        datetime | None]:
        claim = self.queue.start(practice_id, token=token) if self.queue is not None else None
        since = None
        if self.coordination is not None:
            try:
                since = self.coordination.confirmed_since(practice_id)
            except CoordinationUnavailable as exc:
                log.warning("forbidden_ledger_unavailable", practice_id=practice_id, error=str(exc))
        return claim, None, since

    def answered(self, practice_id: int, *, noted: bool, guid: str | None, since: datetime | None) -> tuple[int, int]:
        if noted and self.coordination is not None:
            _best_effort(self.coordination.note_answered, practice_id)
        # Read after the mark: see ``reconcile``'s answered step.
        ms = self.queue.now_ms() if self.queue is not None else 0
        forbidden = 0
        if guid is not None and self.coordination is not None:
            try:
                forbidden = self.coordination.forbidden_count(guid, since=since)
            except CoordinationUnavailable as exc:
                # Without the ledger we cannot tell persistence; the next run will.
                log.warning("forbidden_ledger_unavailable", practice_id=practice_id, error=str(exc))
        return ms, forbidden

    def finish(self, practice_id: int, claim: Claim | None, *, current_guid: str, answered_ms: int, noted: bool,
               replaced_guid: str | None = None, confirmed: bool | None = None, past_guids: Sequence[str] = (),
               breaker_closing: bool = False) -> tuple[bool, bool]:
        if noted and self.coordination is not None:
            _best_effort(self.coordination.note_reconciled, practice_id,
                         current_guid=current_guid, replaced_guid=replaced_guid, confirmed=confirmed,
                         past_guids=past_guids)
        again = self.queue.done(claim, current_guid, answered_ms) if claim is not None and self.queue is not None else False
        return again, breaker_closing


def reconcile(practice_id: int, *, trigger: Trigger, deps: Deps, token: str | None = None,
              wait_seconds: float = 0.0, operator: bool = False) -> ReconcileResult:
    """Run one reconciliation. ``token`` names the run (a Celery task id: a redelivered message takes
    its dead delivery's claim over). Without the claim, wait up to ``wait_seconds`` for it, then raise
    ``Busy`` saying when to come back. ``operator`` is an operator's run in this process: it goes on
    through a backoff and a refused key (how a person tests a new key); queued work never does."""
    runs = deps.runs(deps) if deps.runs is not None else PortRuns(deps.queue, deps.coordination)
    claim, breakers, confirmed = _claim(practice_id, runs, deps, token or uuid.uuid4().hex, wait_seconds)
    answered = _Answered(confirmed=confirmed)
    ran: tuple[ReconcileResult, bool] | None = None
    try:
        # The claim's lock is short; this run renews it while it is alive (reconciler.usecases.claims).
        with kept_alive(claim, getattr(deps.queue, "renew", None), every=getattr(deps.queue, "lock_seconds", 0) / 3):
            ran = _run(practice_id, trigger, deps, runs, answered, operator, breakers)
    finally:
        if ran is None:  # raised: release the claim, nothing to note
            runs.finish(practice_id, claim, current_guid="", answered_ms=answered.ms, noted=False)
    result, closing = ran
    again, breaker_open = _finish(runs, claim, result, answered.ms, closing)
    if breaker_open:
        result = _close_breaker(deps, result)
    return replace(result, again=again) if again else result


@dataclass
class _Answered:
    ms: int = 0  # when Halo had answered, on the queue's clock (0: no answer)
    confirmed: datetime | None = None  # when the practice's consecutive confirmations began (read with the claim)


def _finish(runs: Runs, claim: Claim | None, result: ReconcileResult, answered_ms: int,
            closing: bool) -> tuple[bool, bool]:
    """Note the answer (every answer rewrites the practice's GUID index entries, current and every GUID it
    left, so a write lost at switch time is repaired by the next answer), see whether a breaker is open to
    close, release the claim: one call. The note is best effort; releasing the claim is not, so a failure
    is tried once more without the note (as the two were separate calls, a note lost to a blip waits for
    the next answer)."""
    current = result.current_guid or ""
    noted = result.skipped is None
    try:
        return runs.finish(result.practice_id, claim, current_guid=current, answered_ms=answered_ms, noted=noted,
                           replaced_guid=result.old_guid if result.action is Action.SWITCHED else None,
                           confirmed=_confirmation(result), past_guids=result.past_guids, breaker_closing=closing)
    except CoordinationUnavailable as exc:
        if not noted:
            raise
        log.warning("coordination_update_failed", practice_id=result.practice_id, error=str(exc))
        return runs.finish(result.practice_id, claim, current_guid=current, answered_ms=answered_ms, noted=False,
                           breaker_closing=closing)


def _claim(practice_id: int, runs: Runs, deps: Deps, token: str,
           wait_seconds: float) -> tuple[Claim | None, list[BreakerState] | None, datetime | None]:
    deadline = time.monotonic() + wait_seconds
    while True:
        claim, breakers, confirmed = runs.begin(practice_id, token=token)
        if claim is None or claim.granted:
            if claim is not None and claim.taken_over:
                log.warning("reconcile_redelivered", practice_id=practice_id)
            return claim, breakers, confirmed
        left = deadline - time.monotonic()
        if left <= 0:
            raise Busy(f"another reconciliation of practice {practice_id} is running; try again shortly",
                       retry_in=claim.retry_in_ms / 1000)
        deps.sleep(min(left, claim.retry_in_ms / 1000, 1.0))


def _gate(practice: Practice, operator: bool, now: datetime) -> SkipReason | None:
    if operator:
        return None
    if practice.next_attempt_at is not None and practice.next_attempt_at > now:
        return SkipReason.BACKOFF
    return None


def _admit(practice_id: int, deps: Deps, operator: bool, breakers: list[BreakerState] | None) -> Admission:
    """The breaker's word on an automatic run; blocked work is kept for when it closes. ``breakers``: its
    state as read with the claim (None: the breaker reads it)."""
    if operator or deps.breaker is None:
        return Admission.ADMIT
    admission = deps.breaker.admit(now=deps.clock().timestamp(), states=breakers, holder=practice_id)
    if admission is Admission.BLOCKED:
        deps.breaker.keep(practice_id)
    elif admission is Admission.PROBE:
        log.info("breaker_probing", practice_id=practice_id)
    return admission


@dataclass(frozen=True)
class _Read:
    """What one statement read before Halo was asked (``Store.practice_for_run``)."""

    practice: Practice  # detached, at the version the act step's UPDATE is guarded by
    previous_guids: dict[str, datetime]
    own_tickets: bool  # an unresolved ticket of this practice existed
    integrator_tickets: bool  # an unresolved integrator-wide ticket existed


def _read(deps: Deps, practice_id: int) -> _Read:
    with deps.unit_of_work() as store:
        return _Read(*store.practice_for_run(practice_id))


def _run(practice_id: int, trigger: Trigger, deps: Deps, runs: Runs, answered: _Answered, operator: bool,
         breakers: list[BreakerState] | None) -> tuple[ReconcileResult, bool]:
    """The run between its claim and its finish; with whether the breaker is to close (a normal answer)."""
    started = time.monotonic()
    read = _read(deps, practice_id)
    practice = read.practice
    skipped = _gate(practice, operator, deps.clock())
    admission = Admission.ADMIT
    if skipped is None:
        admission = _admit(practice_id, deps, operator, breakers)
        if admission is Admission.BLOCKED:
            skipped = SkipReason.BREAKER_OPEN
    if skipped:
        log.info("reconcile_skipped", practice_id=practice_id, trigger=str(trigger), reason=str(skipped))
        return ReconcileResult(practice_id=practice_id, trigger=trigger, verdict=None, action=Action.NONE,
                               old_guid=practice.halo_guid, skipped=skipped), False

    calls_before = deps.halo.attempts
    for _ in range(MAX_ASKS):
        answer = ask_halo(deps.halo, practice, deps.identifier_query)
        # One call: from now on this run answers any report (a queued re-check is cleared, later reports
        # only count); the queue's clock read after that mark (a report stamped up to this instant either
        # folded into this run or only counted; only a later one may ask for another run); and the 403s
        # the history needs.
        ledger = practice.halo_guid if _counts_forbidden(practice) else None
        answered.ms, forbidden = runs.answered(practice_id, noted=answer.error is None, guid=ledger,
                                               since=answered.confirmed or practice.last_verified_at)
        try:
            result = _act_on(read, trigger, deps, answer, calls_before, started, forbidden)
        except BaseException:
            if admission is Admission.PROBE and deps.breaker is not None:
                _best_effort(lambda _pid: deps.breaker.release_probe(), practice_id)  # type: ignore[union-attr]
            raise
        if result is not None:
            closing = _after_answer(deps, result, admission)
            _after_commit(deps, result)
            return result, closing
        # The practice changed while we asked Halo (another run switched it, a person decided): this
        # answer may be older than that state, so it is not applied. Read the practice, ask again.
        read = _read(deps, practice_id)
        practice = read.practice
        log.info("reconcile_reasked", practice_id=practice_id, version=practice.version)
    raise InvalidState(f"practice {practice_id} kept changing while Halo was asked; gave up after {MAX_ASKS} answers")


class _NeedsCheck(Exception):
    """The decision would switch to ``guid``, and no Get site status answer on it was asked yet."""

    def __init__(self, guid: str, guard: GuardState | None) -> None:
        super().__init__(guid)
        self.guid = guid
        self.guard = guard  # the guard read for this decision: the decision after the check uses it again


def _act_on(read: _Read, trigger: Trigger, deps: Deps, answer: HaloAnswer, calls_before: int,
            started: float, forbidden: int) -> ReconcileResult | None:
    """Decide and act on one Halo answer; None when the practice moved on since it was read.
    ``forbidden``: the 403s counted for the practice as read (``_history`` counts again after a conflict)."""
    practice = read.practice
    history = History(previous_guids=read.previous_guids, forbidden_reports_since_verified=forbidden)
    guard: GuardState | None = None
    for _ in range(MAX_CONFLICTS):
        try:
            return _act(read, history, trigger, deps, answer, deps.halo.attempts - calls_before, started, guard)
        except _NeedsCheck as need:
            # Verify before switching: one Get site status on the new GUID (pairing Zedmed and D4w
            # sites that are not paired with us), outside any transaction, then decide again.
            guard = need.guard
            answer = replace(answer, check=check_site(deps.halo, practice, need.guid))
        except Conflict as exc:
            # Another writer got there first: the practice itself (the UPDATE is guarded by the version
            # read before Halo was asked), or a ticket or a flag. Only the conflict path reads again.
            log.info("reconcile_conflicted", practice_id=practice.id, conflict=str(exc)[:200])
            fresh = _read(deps, practice.id)  # type: ignore[arg-type]
            if fresh.practice.version != practice.version:
                return None
            read, practice, guard = fresh, fresh.practice, None
            history = _history(deps, read)
    raise InvalidState(f"practice {practice.id} kept conflicting; gave up after {MAX_CONFLICTS} attempts")


def _history(deps: Deps, read: _Read) -> History:
    return History(previous_guids=read.previous_guids,
                   forbidden_reports_since_verified=_forbidden_since_verified(deps, read.practice))


_NOT_AN_ANSWER = (Verdict.HALO_UNAVAILABLE, Verdict.UNAUTHORIZED, Verdict.IP_NOT_ALLOWED, Verdict.QUOTA_EXCEEDED)


def _act(read: _Read, history: History, trigger: Trigger, deps: Deps, answer: HaloAnswer, halo_calls: int,
         started: float, guard: GuardState | None) -> ReconcileResult:
    """Classify, decide and write, in one transaction whose statements are the change itself (a
    ``unchanged`` run: the practice's UPDATE and the audit row; a switch: the guard's count, the UPDATE,
    the GUID history's close and insert, the audit row)."""
    now = deps.clock()
    practice = read.practice
    practice_id: int = practice.id  # type: ignore[assignment]
    recorded = recorded_from(practice)
    classification = classify(recorded, answer, history, now=now, policy=deps.policy)
    with deps.unit_of_work() as store:
        if classification.verdict is Verdict.INFRASTRUCTURE_CHANGE and guard is None:
            guard = store.guard_state(now=now, policy=deps.policy)
        used = guard if classification.verdict is Verdict.INFRASTRUCTURE_CHANGE and guard is not None else NO_GUARD
        decision = decide(classification, recorded, policy=deps.policy, guard=used, history=history)
        if decision.switch_to:
            check = answer.check
            if check is None or check.guid != decision.switch_to:
                raise _NeedsCheck(decision.switch_to, guard)
            classification = verify_switch(classification, check)
            if classification.verdict is not Verdict.INFRASTRUCTURE_CHANGE:
                used = NO_GUARD
            decision = decide(classification, recorded, policy=deps.policy, guard=used, history=history)
        # Every later line of this reconciliation (the task binds practice and task id) says what it is
        # about: the GUID in use, the one Halo proposes, the verdict.
        logs.bind_contextvars(old_guid=recorded.halo_guid, new_guid=classification.new_guid,
                              verdict=str(classification.verdict))
        halo_answered = answer.error is None and classification.verdict not in _NOT_AN_ANSWER
        change = plan_change(recorded, classification, decision, halo_answered=halo_answered, now=now,
                             policy=deps.policy, random=deps.random())
        try:
            ticket_id = store.apply_change(practice, change, now=now, own_tickets=read.own_tickets,
                                           integrator_tickets=read.integrator_tickets)
            duration_ms = int((time.monotonic() - started) * 1000)
            audit = store.add_audit(Reconciliation(
                practice_id=practice_id,
                trigger=trigger,
                started_at=now,
                finished_at=deps.clock(),
                duration_ms=duration_ms,
                halo_calls=halo_calls,
                verdict=classification.verdict,
                action=decision.action,
                old_guid=recorded.halo_guid,
                new_guid=classification.new_guid,
                ticket_id=ticket_id,
                halo_answer=summarise(answer),
                detail=classification.reason[:2000],
            ))
            store.commit()
        except Conflict:
            store.rollback()
            raise
    if change.switch_to:
        log.info("guid_switched", practice_id=practice_id, old_guid=recorded.halo_guid, new_guid=change.switch_to)
    return ReconcileResult(
        practice_id=practice_id, trigger=trigger, verdict=classification.verdict, action=decision.action,
        old_guid=recorded.halo_guid, new_guid=classification.new_guid, ticket_id=ticket_id,
        reconciliation_id=audit.id, halo_calls=halo_calls, duration_ms=duration_ms, detail=classification.reason,
        past_guids=tuple(sorted(set(history.previous_guids) - {change.switch_to or recorded.halo_guid})),
    )


def _after_answer(deps: Deps, result: ReconcileResult, admission: Admission) -> bool:
    """The breaker learns what Halo said: a refusal trips it (a failed probe waits twice as long), no
    answer at all leaves it as it was, and any other answer closes it: True, the run's finish looks
    whether one is open (``_close_breaker`` closes it then)."""
    if deps.breaker is None:
        return False
    breaker = deps.breaker
    now = deps.clock()
    try:
        if is_breaker_verdict(result.verdict):
            state = breaker.trip(result.verdict, now=now.timestamp())  # type: ignore[arg-type]
            log.warning("breaker_tripped", cause=str(state.cause), scope=state.scope, failures=state.failures,
                        next_probe_in=round(state.next_probe_at - now.timestamp()), probe=admission is Admission.PROBE)
            return False
        if result.verdict is Verdict.HALO_UNAVAILABLE:
            if admission is Admission.PROBE:
                # Halo said nothing about the key, IP or quota: the breaker stays and waits longer, so an
                # outage on top of it still costs one probe per interval.
                for state in breaker.states():
                    breaker.trip(state.cause, now=now.timestamp())
            return False
    except CoordinationUnavailable as exc:
        log.warning("breaker_unavailable", practice_id=result.practice_id, error=str(exc))
        return False
    return True


def _close_breaker(deps: Deps, result: ReconcileResult) -> ReconcileResult:
    """Halo answered normally and a breaker is open: close it, resolve its integrator-wide tickets and
    queue the work kept meanwhile."""
    breaker = deps.breaker
    if breaker is None:
        return result
    now = deps.clock()
    try:
        closed, waiting = breaker.close()
    except CoordinationUnavailable as exc:
        log.warning("breaker_unavailable", practice_id=result.practice_id, error=str(exc))
        return result
    if not closed and not waiting:
        return result
    if closed:
        with deps.unit_of_work() as store:
            # The condition the breaker stood for has cleared: its integrator-wide tickets resolve now,
            # whoever reported them.
            store.resolve_tickets(practice_id=None, reasons=[r for r in INTEGRATOR_WIDE_REASONS
                                                             if str(r) in {str(c) for c in closed}], now=now)
            store.commit()
    released = tuple(pid for pid in waiting if pid != result.practice_id)
    log.info("breaker_closed", causes=[str(c) for c in closed], kept=len(waiting), practice_id=result.practice_id)
    if deps.requeue is not None:
        for pid in released:
            try:
                deps.requeue(pid)
            except CoordinationUnavailable as exc:
                # Not lost: the sweep finds it stale or due, as it would any practice.
                log.warning("breaker_requeue_failed", practice_id=pid, error=str(exc))
    return replace(result, released=released)


def _counts_forbidden(practice: Practice) -> bool:
    # 403s count toward persistence only after Halo confirmed the GUID in use ("verified unchanged in
    # between"): the reports that triggered the first look are not evidence. They count from the first
    # of the consecutive confirmations (each re-check confirms again; the 403s keep adding up).
    return practice.last_verdict in (Verdict.UNCHANGED, Verdict.INFRASTRUCTURE_CHANGE)


def _forbidden_since_verified(deps: Deps, practice: Practice) -> int:
    """The 403 count after a conflict's fresh read (the first answer's comes with ``Runs.answered``)."""
    if deps.coordination is None or not _counts_forbidden(practice):
        return 0
    try:
        since = deps.coordination.confirmed_since(practice.id) or practice.last_verified_at  # type: ignore[arg-type]
        return deps.coordination.forbidden_count(practice.halo_guid, since=since)
    except CoordinationUnavailable as exc:
        # Without the ledger we cannot tell persistence; the next run will.
        log.warning("forbidden_ledger_unavailable", practice_id=practice.id, error=str(exc))
        return 0


def _confirmation(result: ReconcileResult) -> bool | None:
    """True: Halo confirmed the GUID now in use; False: it answered, a person must act; None: no answer."""
    if result.verdict is Verdict.UNCHANGED or result.action is Action.SWITCHED:
        return True
    if result.verdict in (Verdict.BUSINESS_CHANGE, Verdict.NOT_FOUND, Verdict.AMBIGUOUS, Verdict.FLAPPING,
                          Verdict.INFRASTRUCTURE_CHANGE):
        return False
    return None


def _after_commit(deps: Deps, result: ReconcileResult) -> None:
    deps.observe(result)
    logs.unbind_contextvars("old_guid", "new_guid", "verdict")
    log.info("reconcile_finished", practice_id=result.practice_id, trigger=str(result.trigger),
             verdict=str(result.verdict), action=str(result.action), old_guid=result.old_guid,
             new_guid=result.new_guid, halo_calls=result.halo_calls, duration_ms=result.duration_ms)


def _best_effort(call: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except CoordinationUnavailable as exc:
        log.warning("coordination_update_failed", practice_id=args[0] if args else None, error=str(exc))


# --- resolve ------------------------------------------------------------------------------------


def ask_halo(halo: Halo, practice: Practice, identifier_query: str | None) -> HaloAnswer:
    """Find sites for the practice's PMS ID (and the identifier query on the candidate, if configured).

    Every Halo failure becomes part of the answer: the classifier decides what it means.
    """
    try:
        sites = tuple(halo.find_sites(practice.pms_type, practice.pms_id))
    except HaloError as exc:
        return HaloAnswer(sites=None, error=exc)
    extra = None
    if identifier_query:
        selection = select_site(sites)
        candidate = selection.site if selection.outcome == "selected" else None
        if candidate is not None:
            try:
                result = halo.immediate_query(candidate.id, identifier_query)
            except HaloError as exc:
                return HaloAnswer(sites=None, error=exc)
            extra = result.rows[0] if result.rows else {}
    return HaloAnswer(sites=sites, error=None, extra_identifiers=extra)


def check_site(halo: Halo, practice: Practice, guid: str) -> SiteCheck:
    """Get site status on ``guid``; a Zedmed or D4w site that answers as unpaired is paired, then
    asked again. Every Halo failure becomes part of the check: ``verify_switch`` decides."""
    try:
        return SiteCheck(guid, site=halo.get_site(guid))
    except HaloError as exc:
        if not (is_unpaired_answer(exc) and PmsType(practice.pms_type).pairs_without_code):
            return SiteCheck(guid, error=exc)
    try:
        halo.pair_site(practice.pms_type, practice.pms_id)
        log.info("site_paired", practice_id=practice.id, guid=guid)
        return SiteCheck(guid, site=halo.get_site(guid), paired=True)
    except HaloError as exc:
        return SiteCheck(guid, error=exc, paired=True)


def _error_summary(err: HaloError) -> dict[str, Any]:
    summary: dict[str, Any] = {"error": type(err).__name__, "status": err.status, "message": err.message[:300]}
    if isinstance(err, HaloUnavailable) and err.retry_after is not None:
        summary["retry_after"] = err.retry_after
    cause = getattr(err, "cause", None)
    if cause is not None:
        summary["cause"] = str(cause)
    return summary


def summarise(answer: HaloAnswer) -> dict[str, Any]:
    """What the audit record keeps of Halo's answer: no headers, no key."""
    if answer.error is not None:
        return _error_summary(answer.error)
    summary: dict[str, Any] = {"sites": [site.summary() for site in answer.sites or ()]}
    if answer.extra_identifiers is not None:
        summary["extra_identifiers"] = dict(answer.extra_identifiers)
    if answer.check is not None:
        check = answer.check
        summary["site_check"] = {"guid": check.guid, "paired": check.paired,
                                 **({"site": check.site.summary()} if check.site is not None else {}),
                                 **({"error": _error_summary(check.error)} if check.error is not None else {})}
    return summary


def recorded_from(practice: Practice) -> Recorded:
    return Recorded(
        practice_id=practice.id,  # type: ignore[arg-type]
        halo_guid=practice.halo_guid,
        identifiers_normalised=dict(practice.identifiers_normalised),
        state=practice.state,
        proposed_guid=practice.proposed_guid,
        rejected_fingerprint=practice.rejected_fingerprint,
        backoff_attempts=practice.backoff_attempts,
        unavailable_since=practice.unavailable_since,
    )

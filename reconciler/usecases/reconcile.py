"""One reconciliation, read top to bottom in ``reconcile``. Level-triggered: the 403 is evidence, not input.

``reconcile(practice_id, trigger=..., deps=...)`` is the one path the Celery task, ``reconcile --now``
and ``sweep --now`` all take; ``after_run`` is the one set of steps that follows it. The steps, in the
order ``reconcile`` takes them (sample-controller's ``syncHandler``):

1. **claim** the practice in the work queue (one run per practice across every worker), reading in the
   same round trip the breaker's state and when the practice's confirmations began;
2. **read** the practice, its GUID history, whether it has unresolved tickets and the mass-change
   guard's counts: one statement, in the run's one database session (no transaction stays open while
   Halo is asked);
3. **gate**: an automatic run spends no Halo call while the practice waits for its backoff, or while
   the integrator-wide breaker is open (``reconciler.core.breaker``: the work is kept, and one run at
   a time probes on exponential backoff); an operator's run always goes on;
4. **ask** Halo (Find sites, and the identifier query if configured), note that the practice has an
   answer, then **classify** it and **decide** (the core's ``decide``: the whole change, tickets
   included; its ``switch_to`` is the pure "would this switch?" answer);
5. **verify**: a change that would switch first asks Get site status on the new GUID (pairing a
   Zedmed or D4w site that is not paired with us), and is decided again on that answer (the core's
   ``verify_switch``): nothing is switched to without an ``active`` answer in this reconciliation;
6. **write** the change in one transaction, only while the practice is still at the version read
   before Halo was asked. A conflict on a ticket or flag decides again on a fresh read (at most
   ``MAX_CONFLICTS`` times); a newer version means this answer may be older than that state, so Halo
   is asked again (at most ``MAX_ASKS`` times): an old answer never overwrites a newer switch;
7. **finish**: the breaker learns what Halo said (a refusal trips it; any other answer closes it,
   resolving its integrator-wide tickets and queueing the work kept meanwhile, once per practice); the
   answer is noted, the claim released and the run announced to the reports waiting on it
   (``RunFinished``: ``POST /v1/reports`` with ``wait_seconds``) in one round trip; the result says
   whether exactly one more run must follow (``again``).

**When a run is tried again** is decided in one place, ``retry_in`` below, which the Celery task
asks for every exception a run raises: ``Busy`` (another run holds the claim) comes back when the
claim can be ours; the database or the coordination store briefly away comes back with capped,
jittered exponential backoff; anything else (``InvalidState`` after ``MAX_ASKS``/``MAX_CONFLICTS``
included) is not retried (the sweep finds the practice). Neither ``MAX_ASKS`` nor ``MAX_CONFLICTS``
is a retry: both are bounds inside one run. A practice's own backoff after ``halo_unavailable`` is a
verdict's effect, not a retry: the core's ``decide`` writes ``next_attempt_at``, the gate honours it
and the sweep queues the practice when it is due.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from models import Action, PmsType, Practice, Reconciliation, Trigger, Verdict
from reconciler import logs
from reconciler.core import backoff
from reconciler.core.breaker import Admission, is_breaker_verdict, reasons_cleared
from reconciler.core.change import PracticeChange
from reconciler.core.classify import (
    Classification,
    HaloAnswer,
    History,
    Recorded,
    classify,
    is_unpaired_answer,
    verify_switch,
)
from reconciler.core.errors import Busy, Conflict, CoordinationUnavailable, InvalidState
from reconciler.core.facts import SiteCheck
from reconciler.core.halo_errors import HaloError, HaloUnavailable
from reconciler.core.policy import GuardState, Policy, decide
from reconciler.core.selection import select_site
from reconciler.core.vocabulary import SkipReason
from reconciler.core.work import Claim, RunFinished
from reconciler.usecases.claims import STOPPED, keep_alive
from reconciler.usecases.ports import Breaker, Halo, Runs, Store, UnitOfWork
from reconciler.usecases.queueing import FollowUpQueue, publish_follow_up

log = logs.get_logger()

# Times one run writes when a ticket or flag changed under it (the practice's version did not).
MAX_CONFLICTS = 5
# Times one run asks Halo when the practice changed while it waited for the answer.
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
    """What a reconciliation needs from the outside world (``worker.wiring.reconcile_deps`` builds the real ones)."""

    halo: Halo
    unit_of_work: UnitOfWork
    policy: Policy
    # This run's coordination, one call at each moment (claim, answered, finish): ``RedisRuns`` in
    # production and in the verdict tests' ``world[valkey]``; an in-memory one in ``tests/utils/runs.py``.
    runs: Runs
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


def reconcile(practice_id: int, *, trigger: Trigger, deps: Deps, token: str | None = None,
              wait_seconds: float = 0.0, operator: bool = False) -> ReconcileResult:
    """Run one reconciliation. ``token`` names the run (a Celery task id: a redelivered message takes
    its dead delivery's claim over). Without the claim, wait up to ``wait_seconds`` for it, then raise
    ``Busy`` saying when to come back. ``operator`` is an operator's run in this process: it goes on
    through a backoff and a refused key (how a person tests a new key); queued work never does."""
    run = _Run(practice_id, trigger, deps, operator)
    run.claim(token or uuid.uuid4().hex, wait_seconds)                        # 1. claim (kept alive)
    try:
        with deps.unit_of_work() as store:                                    # the run's one session
            read = run.read(store)                                            # 2. read
            skipped = run.gate(read.practice)                                 # 3. gate
            if skipped is not None:
                return run.finish(store, run.skipped(read, skipped))
            for _ask in range(MAX_ASKS):
                judged = run.ask(store, read)                                 # 4. ask, classify, decide
                if judged.change.switch_to and not judged.verified:
                    judged = run.verify(store, read, judged)                  # 5. verify (Halo, no transaction)
                result, read = run.write(store, read, judged)                 # 6. write (again on a conflict)
                if result is not None:
                    return run.finish(store, result)                          # 7. finish
                log.info("reconcile_reasked", practice_id=practice_id, version=read.practice.version)
            raise InvalidState(f"practice {practice_id} kept changing while Halo was asked; "
                               f"gave up after {MAX_ASKS} answers")
    except BaseException:
        run.abandon()  # release the claim (and a probe) unless the finish already did
        raise


def retry_in(error: BaseException, *, retries: int, transient: tuple[type[BaseException], ...] = (),
             random: float) -> float | None:
    """Whether and when a run that raised ``error`` is tried again: seconds to wait, or None for never.

    The one place (the Celery task asks it for every exception; see the module docstring). ``Busy``:
    when the claim can be ours. The coordination store, or a ``transient`` error the caller names
    (the database's ``OperationalError``), briefly away: capped exponential backoff with full jitter,
    ``[0, min(300, 2 * 2**retries)]`` seconds. Anything else is not retried. ``retries``: how many
    times this run was tried again already (the task stops at its ``max_retries``)."""
    if isinstance(error, Busy):
        return error.retry_in
    if isinstance(error, (CoordinationUnavailable, *transient)):
        return round(backoff.full_jitter(retries, base=2, cap=300, random=random))
    return None


def after_run(result: ReconcileResult, *, queue: Callable[[], FollowUpQueue], publish: Callable[[float | None], Any],
              deliver: Callable[[], Any], probe: Callable[[ReconcileResult], Any] = lambda result: None,
              in_process: bool = False) -> None:
    """What follows every finished run, in one place for the worker's task and the operator's
    in-process runs (``reconcile --now``, ``sweep --now``), in this order (the reports waiting on the
    run heard that it finished in its finish step, with its ``again``):

    1. the follow-up: a report the run did not answer arrived while it ran, so exactly one more run is
       published (``publish(countdown)``, through ``queueing.publish_follow_up`` over ``queue()``);
    2. the breaker's own probe (``probe``: ``tasks.probe.after_run`` over ``usecases.probing``): a run
       that tripped the breaker, was kept by it, or whose probe failed schedules the probe task for
       when it is due, one across workers;
    3. the outbox: a run that opened or counted a ticket, switched or held delivers its events now
       (ticket events, ``practice.guid_changed``, ``practice.held``); an operator's
       in-process run delivers whatever is pending (no worker need be running; the beat sends the rest).

    A worker's follow-up that cannot be published raises (``retry_in`` tries the task again); an
    in-process run's is logged: the next report or sweep queues the practice again."""
    if result.again:
        try:
            publish_follow_up(queue(), result.practice_id, publish)
        except CoordinationUnavailable:
            if not in_process:
                raise
            log.warning("follow_up_not_queued", practice_id=result.practice_id, exc_info=True)
    probe(result)
    if in_process or result.ticket_id is not None or result.action in (Action.SWITCHED, Action.HELD):
        deliver()


# --- the run's steps, in order ------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    """What one statement read before Halo was asked (``Store.practice_for_run``)."""

    practice: Practice  # detached, at the version the write's UPDATE is guarded by
    previous_guids: dict[str, datetime]
    own_tickets: bool  # an unresolved ticket of this practice existed
    integrator_tickets: bool  # an unresolved integrator-wide ticket existed
    guard_counts: tuple[int, bool]  # automatic switches in the mass-change window, and whether paused
    periods: tuple[Any, ...]  # its GUID periods, oldest first (a switch's change event carries them)


@dataclass(frozen=True)
class _Judged:
    """One answer from Halo, classified and decided (``verified``: Get site status answered on the new GUID)."""

    answer: HaloAnswer
    history: History
    classification: Classification
    guard: GuardState
    change: PracticeChange
    now: datetime
    verified: bool = False


class _Run:
    """One run's state between its steps: its claim, what the breaker admitted, when Halo answered."""

    def __init__(self, practice_id: int, trigger: Trigger, deps: Deps, operator: bool) -> None:
        self.practice_id, self.trigger, self.deps, self.operator = practice_id, trigger, deps, operator
        self.runs = deps.runs
        self.started = time.monotonic()
        self.claimed: Claim | None = None
        self.held = False  # the claim is ours until the finish releases it
        self.renewal = STOPPED  # the claim's renewal, from the grant until just before the release
        self.breakers: Any = None  # the breakers' state as read with the claim (None: the breaker reads it)
        self.confirmed: datetime | None = None  # when the practice's consecutive confirmations began
        self.admission = Admission.ADMIT
        self.answered_ms = 0  # when Halo had answered, on the queue's clock (0: no answer)
        self.calls_before = 0

    # 1. claim

    def claim(self, token: str, wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        while True:
            claim, self.breakers, self.confirmed = self.runs.begin(self.practice_id, token=token)
            if claim is None or claim.granted:
                if claim is not None and claim.taken_over:
                    log.warning("reconcile_redelivered", practice_id=self.practice_id)
                self.claimed, self.held = claim, True
                # The claim's lock is short: it is renewed while the run lives (reconciler.usecases.claims).
                self.renewal = keep_alive(claim, self.runs.renew, every=self.runs.lock_seconds / 3)
                self.started = time.monotonic()  # the run's duration excludes its wait for the claim
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise Busy(f"another reconciliation of practice {self.practice_id} is running; try again shortly",
                           retry_in=claim.retry_in_ms / 1000)
            self.deps.sleep(min(left, claim.retry_in_ms / 1000, 1.0))

    # 2. read

    def read(self, store: Store) -> _Read:
        window = timedelta(seconds=self.deps.policy.mass_change_window_seconds)
        read = _Read(*store.practice_for_run(self.practice_id, switches_since=self.deps.clock() - window))
        store.rollback()  # end the read: no transaction (nor pooled connection) is held while Halo is asked
        return read

    # 3. gate

    def gate(self, practice: Practice) -> SkipReason | None:
        """An automatic run's word from the practice's backoff, then from the breaker (blocked work is
        kept for when it closes); an operator's run always goes on."""
        self.calls_before = self.deps.halo.attempts  # this run's Halo calls are counted from here
        if self.operator:
            return None
        skipped = None
        if practice.next_attempt_at is not None and practice.next_attempt_at > self.deps.clock():
            skipped = SkipReason.BACKOFF
        elif self.deps.breaker is not None:
            self.admission = self.deps.breaker.admit(now=self.deps.clock().timestamp(), states=self.breakers,
                                                     holder=self.practice_id)
            if self.admission is Admission.BLOCKED:
                self.deps.breaker.keep(self.practice_id)
                skipped = SkipReason.BREAKER_OPEN
            elif self.admission is Admission.PROBE:
                log.info("breaker_probing", practice_id=self.practice_id)
        if skipped is not None:
            log.info("reconcile_skipped", practice_id=self.practice_id, trigger=str(self.trigger), reason=str(skipped))
        return skipped

    def skipped(self, read: _Read, reason: SkipReason) -> ReconcileResult:
        return ReconcileResult(practice_id=self.practice_id, trigger=self.trigger, verdict=None, action=Action.NONE,
                               old_guid=read.practice.halo_guid, skipped=reason)

    # 4. ask, classify, decide

    def ask(self, store: Store, read: _Read) -> _Judged:
        """Ask Halo, outside any transaction. Then one call: from now on this run answers any report (a
        queued re-check is cleared, later reports only count); the queue's clock read after that mark (a
        report stamped up to this instant folded into this run or only counted; only a later one may ask
        for another run); and the 403s the history needs."""
        answer = ask_halo(self.deps.halo, read.practice, self.deps.identifier_query)
        self.answered_ms, forbidden = self._answered(read.practice, noted=answer.error is None)
        return self.judge(store, read, answer, forbidden)

    def _answered(self, practice: Practice, *, noted: bool) -> tuple[int, int]:
        ledger = practice.halo_guid if _counts_forbidden(practice) else None
        return self.runs.answered(self.practice_id, noted=noted, guid=ledger,
                                  since=self.confirmed or practice.last_verified_at)

    def judge(self, store: Store, read: _Read, answer: HaloAnswer, forbidden: int) -> _Judged:
        """Classify the answer and decide (the mass-change guard, from the counts the read carries, only
        for an infrastructure change).
        An answer that carries Get site status on the GUID the change would switch to is verified here."""
        now = self.deps.clock()
        recorded = recorded_from(read.practice)
        history = History(previous_guids=read.previous_guids, forbidden_reports_since_verified=forbidden)
        classification = classify(recorded, answer, history, now=now, policy=self.deps.policy)
        guard = NO_GUARD
        if classification.verdict is Verdict.INFRASTRUCTURE_CHANGE:
            # Counted by the run's read, so only the fleet's size may be read here (past the guard's minimum).
            guard = store.guard_state(now=now, policy=self.deps.policy, counted=read.guard_counts)
            store.rollback()  # a read: nothing stays open while Get site status is asked
        judged = _Judged(answer, history, classification, guard, self._decide(classification, recorded, guard,
                                                                               history, now), now)
        check = answer.check
        if judged.change.switch_to and check is not None and check.guid == judged.change.switch_to:
            return self._verified(read, judged, check)
        return judged

    def _decide(self, classification: Classification, recorded: Recorded, guard: GuardState, history: History,
                now: datetime) -> PracticeChange:
        return decide(classification, recorded, policy=self.deps.policy, guard=guard, history=history, now=now,
                      random=self.deps.random())

    # 5. verify

    def verify(self, store: Store, read: _Read, judged: _Judged) -> _Judged:
        """Get site status on the GUID the change would switch to (pairing Zedmed and D4w sites that are
        not paired with us), outside any transaction, then decide again on the verified classification."""
        check = check_site(self.deps.halo, read.practice, judged.change.switch_to)  # type: ignore[arg-type]
        return self._verified(read, replace(judged, answer=replace(judged.answer, check=check),
                                            now=self.deps.clock()), check)

    def _verified(self, read: _Read, judged: _Judged, check: SiteCheck) -> _Judged:
        classification = verify_switch(judged.classification, check)
        guard = judged.guard if classification.verdict is Verdict.INFRASTRUCTURE_CHANGE else NO_GUARD
        change = self._decide(classification, recorded_from(read.practice), guard, judged.history, judged.now)
        return replace(judged, classification=classification, guard=guard, change=change, verified=True)

    # 6. write

    def write(self, store: Store, read: _Read, judged: _Judged) -> tuple[ReconcileResult | None, _Read]:
        """The change in one transaction, guarded by the version read before Halo was asked. A conflict
        on a ticket or a flag (the version unchanged) decides again on a fresh read; a newer version
        returns (None, the fresh read): Halo is asked again."""
        for _ in range(MAX_CONFLICTS):
            try:
                return self._commit(store, read, judged), read
            except Conflict as exc:
                log.info("reconcile_conflicted", practice_id=self.practice_id, conflict=str(exc)[:200])
                fresh = self.read(store)
                if fresh.practice.version != read.practice.version:
                    return None, fresh
                read = fresh
                _, forbidden = self._answered(read.practice, noted=False)
                judged = self.judge(store, read, judged.answer, forbidden)
                if judged.change.switch_to and not judged.verified:
                    judged = self.verify(store, read, judged)
        raise InvalidState(f"practice {self.practice_id} kept conflicting; gave up after {MAX_CONFLICTS} attempts")

    def _commit(self, store: Store, read: _Read, judged: _Judged) -> ReconcileResult:
        """The change and its audit row, committed (``Store.write_run``: on PostgreSQL, an unchanged
        run's or a switch's is one statement)."""
        practice, classification, change, now = read.practice, judged.classification, judged.change, judged.now
        # Every later line of this reconciliation (the task binds practice and task id) says what it is
        # about: the GUID in use, the one Halo proposes, the verdict.
        logs.bind_contextvars(old_guid=practice.halo_guid, new_guid=classification.new_guid,
                              verdict=str(classification.verdict))
        halo_calls = self.deps.halo.attempts - self.calls_before
        duration_ms = int((time.monotonic() - self.started) * 1000)
        audit = Reconciliation(
            practice_id=self.practice_id, trigger=self.trigger, started_at=now, finished_at=self.deps.clock(),
            duration_ms=duration_ms, halo_calls=halo_calls, verdict=classification.verdict, action=change.action,
            old_guid=practice.halo_guid, new_guid=classification.new_guid,
            halo_answer=summarise(judged.answer), detail=classification.reason[:2000],
        )
        ticket_id = store.write_run(practice, change, audit, now=now, own_tickets=read.own_tickets,
                                    integrator_tickets=read.integrator_tickets, periods=read.periods)
        if change.switch_to:
            log.info("guid_switched", practice_id=self.practice_id, old_guid=practice.halo_guid,
                     new_guid=change.switch_to)
        return ReconcileResult(
            practice_id=self.practice_id, trigger=self.trigger, verdict=classification.verdict, action=change.action,
            old_guid=practice.halo_guid, new_guid=classification.new_guid, ticket_id=ticket_id,
            reconciliation_id=audit.id, halo_calls=halo_calls, duration_ms=duration_ms, detail=classification.reason,
            past_guids=tuple(sorted(set(judged.history.previous_guids) - {change.switch_to or practice.halo_guid})),
        )

    # 7. finish

    def finish(self, store: Store, result: ReconcileResult) -> ReconcileResult:
        """The breaker learns what Halo said, the run is reported, then one call notes the answer, sees
        whether a breaker is open to close, releases the claim and announces the run; an open breaker
        closes last."""
        closing = False
        if result.skipped is None:
            closing = self._breaker_learns(result)
            self.admission = Admission.ADMIT  # the breaker has its answer: no probe is left to release
            self.deps.observe(result)
            logs.unbind_contextvars("old_guid", "new_guid", "verdict")
            log.info("reconcile_finished", practice_id=result.practice_id, trigger=str(result.trigger),
                     verdict=str(result.verdict), action=str(result.action), old_guid=result.old_guid,
                     new_guid=result.new_guid, halo_calls=result.halo_calls, duration_ms=result.duration_ms)
        again, breaker_open = self._release(result, closing)
        if breaker_open:
            result = self._close_breaker(store, result)
        return replace(result, again=again) if again else result

    def _breaker_learns(self, result: ReconcileResult) -> bool:
        """A refusal trips the breaker (a failed probe waits twice as long), no answer at all leaves it
        as it was, and any other answer closes it: True, the finish looks whether one is open.

        Where the breaker's own probe is scheduled (issue 24): ``breaker.trip`` returns when the next
        probe is due; the result carries it and ``after_run`` schedules the probe task."""
        breaker = self.deps.breaker
        if breaker is None:
            return False
        now = self.deps.clock()
        try:
            if is_breaker_verdict(result.verdict):
                state = breaker.trip(result.verdict, now=now.timestamp())  # type: ignore[arg-type]
                log.warning("breaker_tripped", cause=str(state.cause), scope=state.scope, failures=state.failures,
                            next_probe_in=round(state.next_probe_at - now.timestamp()),
                            probe=self.admission is Admission.PROBE)
                return False
            if result.verdict is Verdict.HALO_UNAVAILABLE:
                if self.admission is Admission.PROBE:
                    # Halo said nothing about the key, IP or quota: the breaker stays and waits longer, so
                    # an outage on top of it still costs one probe per interval.
                    for state in breaker.states():
                        breaker.trip(state.cause, now=now.timestamp())
                return False
        except CoordinationUnavailable as exc:
            log.warning("breaker_unavailable", practice_id=result.practice_id, error=str(exc))
            return False
        return True

    def _release(self, result: ReconcileResult, closing: bool) -> tuple[bool, bool]:
        """Note the answer (every answer rewrites the practice's GUID index entries, current and every
        GUID it left, so a write lost at switch time is repaired by the next answer), see whether a
        breaker is open to close, release the claim and announce the run: one call. The note is best
        effort; releasing the claim is not, so a failure is tried once more without the note."""
        self.held = False
        self.renewal.stop()  # before the release: no renewal lands on (or reads as losing) a released claim
        current = result.current_guid or ""
        noted = result.skipped is None
        # A finished run always read its practice, so ``old_guid`` is set and ``current`` is not empty.
        finished = RunFinished(practice_id=self.practice_id, guid=result.old_guid or current, current_guid=current,
                               action=None if result.verdict is None else str(result.action),
                               answered=result.verdict is not None)
        try:
            return self.runs.finish(self.practice_id, self.claimed, current_guid=current,
                                    answered_ms=self.answered_ms, noted=noted,
                                    replaced_guid=result.old_guid if result.action is Action.SWITCHED else None,
                                    confirmed=_confirmation(result), past_guids=result.past_guids,
                                    breaker_closing=closing, finished=finished)
        except CoordinationUnavailable as exc:
            if not noted:
                raise
            log.warning("coordination_update_failed", practice_id=self.practice_id, error=str(exc))
            return self.runs.finish(self.practice_id, self.claimed, current_guid=current,
                                    answered_ms=self.answered_ms, noted=False, breaker_closing=closing,
                                    finished=finished)

    def _close_breaker(self, store: Store, result: ReconcileResult) -> ReconcileResult:
        """Halo answered normally and a breaker is open: close it, resolve its integrator-wide tickets
        and queue the work kept meanwhile."""
        breaker = self.deps.breaker
        if breaker is None:
            return result
        try:
            closed, waiting = breaker.close()
        except CoordinationUnavailable as exc:
            log.warning("breaker_unavailable", practice_id=result.practice_id, error=str(exc))
            return result
        if not closed and not waiting:
            return result
        if closed:
            # The condition the breaker stood for has cleared: its integrator-wide tickets resolve now,
            # whoever reported them. (Nothing closed but work kept: another key's breaker closed it,
            # the kept work runs now.)
            store.resolve_tickets(practice_id=None, reasons=list(reasons_cleared(closed)), now=self.deps.clock())
            store.commit()
        released = tuple(pid for pid in waiting if pid != result.practice_id)
        log.info("breaker_closed", causes=[str(c) for c in closed], kept=len(waiting), practice_id=result.practice_id)
        if self.deps.requeue is not None:
            for pid in released:
                try:
                    self.deps.requeue(pid)
                except CoordinationUnavailable as exc:
                    # Not lost: the sweep finds it stale or due, as it would any practice.
                    log.warning("breaker_requeue_failed", practice_id=pid, error=str(exc))
        return replace(result, released=released)

    # a run that raised

    def abandon(self) -> None:
        """Release what the run holds: a probe it was admitted as, and the claim (nothing noted)."""
        self.renewal.stop()
        if self.admission is Admission.PROBE and self.deps.breaker is not None:
            try:
                self.deps.breaker.release_probe()
            except CoordinationUnavailable as exc:
                log.warning("coordination_update_failed", practice_id=self.practice_id, error=str(exc))
        if self.held:
            self.held = False
            self.runs.finish(self.practice_id, self.claimed, current_guid="", answered_ms=self.answered_ms,
                             noted=False)


def _counts_forbidden(practice: Practice) -> bool:
    # 403s count toward persistence only after Halo confirmed the GUID in use ("verified unchanged in
    # between"): the reports that triggered the first look are not evidence. They count from the first
    # of the consecutive confirmations (each re-check confirms again; the 403s keep adding up).
    return practice.last_verdict in (Verdict.UNCHANGED, Verdict.INFRASTRUCTURE_CHANGE)


def _confirmation(result: ReconcileResult) -> bool | None:
    """True: Halo confirmed the GUID now in use; False: it answered, a person must act; None: no answer."""
    if result.verdict is Verdict.UNCHANGED or result.action is Action.SWITCHED:
        return True
    if result.verdict in (Verdict.BUSINESS_CHANGE, Verdict.NOT_FOUND, Verdict.AMBIGUOUS, Verdict.FLAPPING,
                          Verdict.INFRASTRUCTURE_CHANGE):
        return False
    return None


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

"""The breaker probes by itself: a probe task scheduled when the breaker opens and after each failed probe.

PRODUCT.md, "The breaker probes by itself": with nothing but a worker running, kept work runs within
a few seconds of the probe interval after Halo answers again. So the probe does not wait for beat or
a new report:

* **schedule** (``schedule_probe``): when a run trips the breaker (it opened, or a probe failed), when
  work is kept while it is open, and whenever a worker looks (``worker.process``'s watch), one probe
  task is published with the time until every open breaker is due as its countdown. The coordination
  store's schedule mark (``RedisBreaker.claim_probe_schedule``) makes it one task across workers, and
  it expires a little past the due time: a probe message lost with a worker or a broker leaves no
  mark behind, so the next look schedules it again. The sweep stays a second way in.
* **probe** (``run_probe``): the task runs one automatic reconciliation of a kept practice (or the one
  whose answer tripped the breaker). It passes the breaker's gate like any run: the breaker's own
  probe lock keeps it to one probe at a time, and its answer trips or closes the breaker as any
  answer does. A closed breaker queues the kept work; a breaker still open is scheduled again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from reconciler import logs
from reconciler.core.breaker import BreakerState, is_breaker_verdict
from reconciler.core.errors import Busy
from reconciler.core.vocabulary import SkipReason, Verdict

log = logs.get_logger()


class ProbeBreaker(Protocol):
    """What scheduling and running a probe need of the breaker (``RedisBreaker``)."""

    base_seconds: float

    def states(self) -> list[BreakerState]: ...
    def claim_probe_schedule(self, *, due: float, now: float) -> bool: ...
    def drop_probe_schedule(self) -> None: ...
    def kept_practice(self) -> int | None: ...
    def keep(self, practice_id: int) -> None: ...


class ProbeOutcome(StrEnum):
    CLOSED = "closed"  # no breaker open: nothing to probe
    EARLY = "early"  # not due yet (a refusal meanwhile pushed it back): scheduled for when it is
    PROBED = "probed"  # one run was let through as the probe (or met another run's probe)
    BUSY = "busy"  # the candidate's run holds its claim: that run passes the gate itself; looked again soon
    IDLE = "idle"  # no work is kept and the message named no practice: nothing to probe with


@dataclass(frozen=True)
class ProbeRun:
    """What the probe's reconciliation came to (a ``ReconcileResult``'s fields that matter here)."""

    verdict: Verdict | None
    skipped: SkipReason | None


def needs_probe(verdict: Verdict | None, skipped: SkipReason | None) -> bool:
    """After a run: is a breaker possibly open with no probe on its way? A refusal tripped it (it opened,
    or a probe failed), work was kept while it is open, or Halo did not answer (a probe that met an outage
    waits longer)."""
    return is_breaker_verdict(verdict) or skipped is SkipReason.BREAKER_OPEN or verdict is Verdict.HALO_UNAVAILABLE


def after_run(breaker: ProbeBreaker, publish: Callable[[int, float], Any], practice_id: int, *,
              verdict: Verdict | None, skipped: SkipReason | None, now: float) -> float | None:
    """After an automatic run (``tasks.reconcile``): a refused run's practice waits with the kept work (it
    got no answer about itself), and the probe is scheduled unless one is on its way. The countdown, or None."""
    if not needs_probe(verdict, skipped):
        return None
    if is_breaker_verdict(verdict):
        breaker.keep(practice_id)
    return schedule_probe(breaker, lambda countdown: publish(practice_id, countdown), now=now)


def schedule_probe(breaker: ProbeBreaker, publish: Callable[[float], Any], *, now: float,
                   at_least: float = 0.0) -> float | None:
    """Publish the one probe task (``publish(countdown)``) unless one is on its way; returns its countdown,
    or None (no breaker open, or already scheduled). A publish that fails takes its mark back and re-raises."""
    states = breaker.states()
    if not states:
        return None
    due = max(max(state.next_probe_at for state in states), now + at_least)
    if not breaker.claim_probe_schedule(due=due, now=now):
        return None
    countdown = max(0.0, due - now)
    try:
        publish(countdown)
    except BaseException:
        breaker.drop_probe_schedule()
        log.warning("breaker_probe_publish_failed", exc_info=True)
        raise
    log.info("breaker_probe_scheduled", countdown=round(countdown, 1), causes=sorted({str(s.cause) for s in states}))
    return countdown


def run_probe(practice_id: int | None, *, breaker: ProbeBreaker, run: Callable[[int], ProbeRun],
              publish: Callable[[float], Any], now: Callable[[], float]) -> ProbeOutcome:
    """The probe task's body: ``practice_id`` is the one whose answer scheduled it (a kept practice is
    preferred: its work is the one waiting). ``run`` reconciles one practice as automatic work; ``publish``
    schedules the next probe task."""
    breaker.drop_probe_schedule()  # this message is the scheduled probe: from now on another may be
    states = breaker.states()
    if not states:
        return ProbeOutcome.CLOSED
    if now() < max(state.next_probe_at for state in states):
        schedule_probe(breaker, publish, now=now())
        return ProbeOutcome.EARLY
    candidate = breaker.kept_practice() or practice_id
    if candidate is None:
        return ProbeOutcome.IDLE
    try:
        ran = run(candidate)
        if ran.skipped is SkipReason.BACKOFF and practice_id is not None and candidate != practice_id:
            ran = run(practice_id)  # a kept practice waiting for its own backoff cannot probe
    except Busy as exc:
        schedule_probe(breaker, publish, now=now(), at_least=max(exc.retry_in, 1.0))
        return ProbeOutcome.BUSY
    log.info("breaker_probe_ran", practice_id=candidate, verdict=str(ran.verdict) if ran.verdict else None,
             skipped=str(ran.skipped) if ran.skipped else None)
    # Still open (the probe was refused, met an outage, or met another run's probe): the next one. A
    # probe that met another's waits an interval, so two probes never chase each other.
    schedule_probe(breaker, publish, now=now(),
                   at_least=breaker.base_seconds if ran.skipped is SkipReason.BREAKER_OPEN else 0.0)
    return ProbeOutcome.PROBED


__all__ = ["ProbeBreaker", "after_run", "ProbeOutcome", "ProbeRun", "needs_probe", "run_probe", "schedule_probe"]

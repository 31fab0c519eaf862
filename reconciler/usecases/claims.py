"""A run keeps its claim alive while it runs, so the claim's lock can be short.

Before, a practice's lock lived past the task's hard time limit (about 30 minutes): a worker host that
died mid-run (main process and pool together, so nothing released it) left the practice deaf that long
(issue 24). Now the lock lives ``lock_seconds`` (a minute) and the run's claim is renewed every third
of that while the run is alive; a dead host stops renewing and the practice is free within a minute,
while a live run, however long Halo takes, keeps it. ``reconcile --now --take-over`` is the operator's
way in before that.

**One renewer per process.** A run registers its claim (``keep_alive``) when it is granted and stops
its renewal (``Renewal.stop``) right before it releases the claim. One daemon thread per process
(started on the first registration, again in a forked child) renews every registered claim when it
is due. A run costs a dictionary entry, not a thread: almost every run ends long before its first
renewal is due, so the thread sleeps through it. The thread's idle wait is never longer than the
shortest renewal interval it has seen, so a claim registered while it sleeps is due after it wakes
(it is only woken early for a shorter interval).

**Stopped before the release.** ``stop`` waits for a renewal of that claim in flight, and a renewal
the store refuses logs ``claim_lost`` only while the claim is still registered: a run that has
released its own claim never reads as having lost it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable

from reconciler import logs
from reconciler.core.errors import CoordinationUnavailable
from reconciler.core.work import Claim

log = logs.get_logger()

_LONGEST = 3600.0  # seconds; the thread's sleep when nothing shorter was asked for


class Renewal:
    """One registered claim: renewed every ``every`` seconds until ``stop``."""

    __slots__ = ("claim", "renew", "every", "due", "live", "lock")

    def __init__(self, claim: Claim, renew: Callable[[Claim], bool], every: float, due: float) -> None:
        self.claim, self.renew, self.every, self.due = claim, renew, every, due
        self.live = True
        self.lock = threading.Lock()  # held by a renewal in flight; ``stop`` waits for it

    def stop(self) -> None:
        """No renewal of this claim after this returns (one in flight is waited for). Idempotent."""
        if self.live:
            with self.lock:
                self.live = False
            _RENEWER.forget(self)


class _Stopped:
    """What ``keep_alive`` hands back when there is nothing to renew."""

    __slots__ = ()

    def stop(self) -> None:
        return None


STOPPED = _Stopped()


class _Renewer:
    """This process's one renewal thread and the claims it renews."""

    def __init__(self) -> None:
        self._reset()
        # A forked child has no thread and must not wait on a lock the parent's thread held at the fork.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._claims: set[Renewal] = set()
        self._started = False
        self._idle = _LONGEST  # the longest the thread sleeps: the shortest interval seen
        self._wake_at = math.inf  # when the sleeping thread wakes by itself (a monotonic time)

    def keep(self, claim: Claim, renew: Callable[[Claim], bool], every: float) -> Renewal:
        renewal = Renewal(claim, renew, every, time.monotonic() + every)
        with self._cond:
            if not self._started:  # the first claim in this process
                threading.Thread(target=self._run, name="claim-renewer", daemon=True).start()
                self._started = True
            self._claims.add(renewal)
            if every < self._idle:
                self._idle = every
            if renewal.due < self._wake_at:
                self._cond.notify()
        return renewal

    def forget(self, renewal: Renewal) -> None:
        with self._cond:
            self._claims.discard(renewal)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [r for r in self._claims if r.due <= now]
                if not due:  # asleep until the next claim is due, at most ``_idle`` from now
                    self._wake_at = min([now + self._idle, *(r.due for r in self._claims)])
                    self._cond.wait(self._wake_at - now)
                    continue
                self._wake_at = now
            for renewal in due:
                _renew_once(renewal)


def _renew_once(renewal: Renewal) -> None:
    """Renew one claim (outside the registry's lock; only its own run's ``stop`` waits for it)."""
    with renewal.lock:
        if not renewal.live:
            return
        renewal.due = time.monotonic() + renewal.every
        try:
            kept = renewal.renew(renewal.claim)
        except CoordinationUnavailable as exc:  # the store away: tried again at the next tick
            log.warning("claim_renewal_failed", practice_id=renewal.claim.practice_id, error=str(exc))
            return
        except Exception as exc:  # never the process's one renewer's end: this claim is tried again too
            log.warning("claim_renewal_failed", practice_id=renewal.claim.practice_id, error=repr(exc)[:200])
            return
        if not kept:  # taken over (or expired): stop renewing; the run still holds it by its own account
            renewal.live = False
            log.warning("claim_lost", practice_id=renewal.claim.practice_id)
    if not renewal.live:
        _RENEWER.forget(renewal)


_RENEWER = _Renewer()


def keep_alive(claim: Claim | None, renew: Callable[[Claim], bool] | None, *, every: float) -> Renewal | _Stopped:
    """Renew ``claim`` every ``every`` seconds until the returned handle's ``stop`` (nothing without a
    granted claim or a ``renew``). A renewal the store refuses (the claim was taken over) stops renewing;
    one that fails (the store away) is tried again at the next tick."""
    if claim is None or not claim.granted or renew is None:
        return STOPPED
    return _RENEWER.keep(claim, renew, every)


__all__ = ["STOPPED", "Renewal", "keep_alive"]

"""The process's claim renewer sleeps when it has nothing to renew.

Its wake-up time is a monotonic time; with no claim registered it was ``3600.0`` (a duration used as a
time), so once the host had been up an hour it waited a negative timeout, i.e. not at all: the thread
spun, holding the GIL, in every worker process and in the test suite's own (where it slowed every
syscall-heavy step of the main thread, the session's PostgreSQL clean-up most: minutes).
"""

from __future__ import annotations

import threading
import time

import pytest

from reconciler.core.work import Claim
from reconciler.usecases import claims
from tests.utils.waiting import wait_until

UPTIME = 100_000.0  # seconds: a host up for more than a day, whatever this one's monotonic clock says


class RecordingCondition(threading.Condition):
    """A condition that records each timeout the renewer waits with."""

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self.timeouts: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return super().wait(timeout)


def test_with_no_claim_left_the_renewer_waits_its_idle_interval(monkeypatch):
    clock = time.monotonic
    monkeypatch.setattr(claims.time, "monotonic", lambda: clock() + UPTIME)
    renewer = claims._Renewer()
    cond = renewer._cond = RecordingCondition()
    renewal = renewer.keep(Claim(1, "task-1", True), lambda claim: True, every=30)
    wait_until(lambda: cond.timeouts, timeout=10, interval=0.01, what="the renewer waiting for the claim")
    renewer.forget(renewal)
    with cond:
        seen = len(cond.timeouts)
        cond.notify()  # it looks again: nothing registered now
    wait_until(lambda: len(cond.timeouts) > seen, timeout=10, interval=0.01, what="the renewer waiting again")
    with cond:
        waits = cond.timeouts[seen:]
    assert 0 < cond.timeouts[0] <= 30  # until the claim is due
    assert waits and all(timeout == pytest.approx(30) for timeout in waits), waits[:5]  # its idle interval, not at once

"""``ride_out``: a run that met the coordination store away waits for it in place (issue 24, High)."""

from __future__ import annotations

import pytest

from reconciler.core.errors import CoordinationUnavailable
from reconciler.usecases.outage import ride_out


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_run_is_tried_again_in_place_until_the_store_answers():
    clock, calls = Clock(), []

    def run() -> str:
        calls.append(clock.now)
        if clock.now < 3:  # Redis restarting for three seconds
            raise CoordinationUnavailable("the coordination store did not answer")
        return "switched"

    assert ride_out(run, budget_seconds=120, sleep=clock.sleep, monotonic=lambda: clock.now) == "switched"
    assert clock.slept == [0.5, 1.0, 2.0] and len(calls) == 4


def test_past_its_budget_the_last_error_is_raised_for_the_brokers_retry():
    clock = Clock()

    def run() -> str:
        raise CoordinationUnavailable("away")

    with pytest.raises(CoordinationUnavailable):
        ride_out(run, budget_seconds=30, sleep=clock.sleep, monotonic=lambda: clock.now)
    assert sum(clock.slept) == 30 and max(clock.slept) == 10  # the wait grows to 10 s, never past the budget


def test_other_errors_are_not_waited_for():
    clock = Clock()

    def run() -> str:
        raise ValueError("not an outage")

    with pytest.raises(ValueError):
        ride_out(run, budget_seconds=30, sleep=clock.sleep, monotonic=lambda: clock.now)
    assert clock.slept == []

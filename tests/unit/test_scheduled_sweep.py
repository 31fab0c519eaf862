"""``scheduled_sweep``: the beat's sweep (the interval's claim, the lock, the plan, the queueing) as a use case."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from models import Trigger
from reconciler.usecases.sweep import scheduled_sweep

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class Locks:
    def __init__(self, *, interval_free: bool = True, lock_free: bool = True) -> None:
        self.interval_free, self.lock_free, self.finished = interval_free, lock_free, []

    def claim_interval(self, now):  # noqa: ANN001, ANN201
        return self.interval_free

    @contextmanager
    def exclusive(self):  # noqa: ANN201
        yield self.lock_free

    def mark_finished(self, now):  # noqa: ANN001, ANN201
        self.finished.append(now)


class Plan:
    def due_retry_ids(self, *, now):  # noqa: ANN001, ANN201
        return iter([3])

    def never_verified_ids(self):  # noqa: ANN201
        return iter([1])

    def stale_practice_ids(self, *, cutoff):  # noqa: ANN001, ANN201
        return iter([2, 3])


class Queue:
    def __init__(self) -> None:
        self.queued: set[int] = set()

    def add(self, practice_id: int) -> str | None:
        if practice_id in self.queued:
            return None
        self.queued.add(practice_id)
        return f"n{practice_id}"

    def confirm(self, practice_id: int, nonce: str) -> bool:
        return True

    def forget(self, practice_id: int, nonce: str | None = None) -> None:
        self.queued.discard(practice_id)


def sweep(locks: Locks, *, scheduled: bool = True) -> tuple[int, list[tuple[int, Trigger]]]:
    published: list[tuple[int, Trigger]] = []

    @contextmanager
    def unit_of_work():  # noqa: ANN202
        yield Plan()

    enqueued = scheduled_sweep(locks=locks, unit_of_work=unit_of_work, queue=Queue(),
                               publish=lambda pid, trigger: published.append((pid, trigger)), breaker=None,
                               clock=lambda: NOW, older_than=timedelta(hours=1), scheduled=scheduled)
    return enqueued, published


def test_a_sweep_queues_each_planned_practice_once_and_marks_the_interval_swept():
    locks = Locks()
    assert sweep(locks) == (3, [(3, Trigger.RETRY), (1, Trigger.SWEEP), (2, Trigger.SWEEP)])
    assert locks.finished == [NOW]


def test_an_interval_another_beat_swept_and_a_held_lock_sweep_nothing():
    assert sweep(Locks(interval_free=False)) == (0, [])
    assert sweep(Locks(lock_free=False)) == (0, [])
    assert sweep(Locks(interval_free=False), scheduled=False)[0] == 3  # a manual sweep claims no interval

"""``after_run``: the steps after a finished run, the same for the worker's task and an operator's run."""

from __future__ import annotations

import pytest

from models import Action, Trigger, Verdict
from reconciler.core.errors import CoordinationUnavailable
from reconciler.usecases.reconcile import ReconcileResult, after_run


class FollowUps:
    def __init__(self, *, delay: float = 0.0, confirm_fails: bool = False) -> None:
        self.delay, self.confirm_fails, self.confirmed, self.forgotten = delay, confirm_fails, [], []

    def follow_up_delay(self, practice_id: int) -> float:
        return self.delay

    def confirm_follow_up(self, practice_id: int) -> bool:
        if self.confirm_fails:
            raise CoordinationUnavailable("the coordination store did not answer")
        self.confirmed.append(practice_id)
        return True

    def forget_follow_up(self, practice_id: int) -> None:
        self.forgotten.append(practice_id)


def result(*, again: bool = False, ticket_id: int | None = None) -> ReconcileResult:
    return ReconcileResult(practice_id=7, trigger=Trigger.FORBIDDEN, verdict=Verdict.UNCHANGED,
                           action=Action.MARKED_VERIFIED, again=again, ticket_id=ticket_id)


def run_after(res: ReconcileResult, queue: FollowUps, *, in_process: bool = False, publish=None) -> tuple[list, int]:  # noqa: ANN001
    published: list[float | None] = []
    delivered = []
    after_run(res, queue=lambda: queue, publish=publish or published.append, deliver=lambda: delivered.append(1),
              in_process=in_process)
    return published, len(delivered)


def test_a_run_with_nothing_pending_publishes_and_delivers_nothing():
    assert run_after(result(), FollowUps()) == ([], 0)


def test_a_report_during_the_run_publishes_one_follow_up_after_the_fresh_answer_and_confirms_it():
    queue = FollowUps(delay=12.5)
    assert run_after(result(again=True), queue) == ([12.5], 0)
    assert queue.confirmed == [7]
    assert run_after(result(again=True), FollowUps(delay=0.0)) == ([None], 0)  # nothing fresh: at once


def test_a_ticket_is_delivered_now_and_an_operators_run_delivers_whatever_is_pending():
    assert run_after(result(ticket_id=3), FollowUps()) == ([], 1)
    assert run_after(result(), FollowUps(), in_process=True) == ([], 1)


def test_a_follow_up_the_store_lost_fails_a_worker_and_is_logged_for_an_operator():
    with pytest.raises(CoordinationUnavailable):
        run_after(result(again=True), FollowUps(confirm_fails=True))
    assert run_after(result(again=True), FollowUps(confirm_fails=True), in_process=True) == ([None], 1)


def test_a_publish_that_fails_takes_its_mark_back():
    def refuse(countdown):  # noqa: ANN001, ANN202
        raise CoordinationUnavailable("the broker did not take it")

    queue = FollowUps()
    assert run_after(result(again=True), queue, in_process=True, publish=refuse) == ([], 1)
    assert queue.forgotten == [7] and queue.confirmed == []

"""A queued mark whose message the broker lost is queued again (issue 24, Medium: a purge left
``halo:dirty:1`` for an hour and four later reports did not switch the practice)."""

from __future__ import annotations

from reconciler.usecases.lost import LostMessageWatch


class Queue:
    def __init__(self) -> None:
        self.marks: dict[int, str] | None = {}
        self.forgotten: list[tuple[int, str | None]] = []

    def queued_marks(self, *, broker_queue: str) -> dict[int, str] | None:
        assert broker_queue == "reconcile"
        return None if self.marks is None else dict(self.marks)

    def forget(self, practice_id: int, nonce: str | None = None) -> None:
        self.forgotten.append((practice_id, nonce))


def test_a_mark_with_no_message_on_two_looks_is_queued_again_once():
    queue, requeued = Queue(), []
    watch = LostMessageWatch(broker_queue="reconcile")
    queue.marks = {1: "n1", 2: "n2"}
    assert watch.look(queue, requeued.append) == []  # first look: maybe a message between queue and worker
    queue.marks = {1: "n1", 2: "n2b"}  # practice 2 was queued again meanwhile (a new publish)
    assert watch.look(queue, requeued.append) == [1]
    assert requeued == [1] and queue.forgotten == [(1, "n1")]  # only that publish's mark is dropped


def test_nothing_is_touched_while_the_broker_holds_any_message():
    queue, requeued = Queue(), []
    watch = LostMessageWatch(broker_queue="reconcile")
    queue.marks = {1: "n1"}
    watch.look(queue, requeued.append)
    queue.marks = None  # a message queued or held by a worker (a countdown follow-up, say)
    assert watch.look(queue, requeued.append) == []
    queue.marks = {1: "n1"}
    assert watch.look(queue, requeued.append) == []  # the count starts again
    assert requeued == [] and queue.forgotten == []

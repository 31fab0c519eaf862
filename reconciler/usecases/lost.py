"""A message lost after the broker took it leaves no practice deaf (issue 24, Medium).

A report that finds its practice queued (``halo:dirty:{id}`` confirmed, ``q``) folds into that message
and publishes nothing: stingy, as client-go's queue. When the message is gone from the broker (purged,
or lost with a broker that restarted without it), the mark used to live out the visibility timeout
(an hour) and every report in that hour folded into nothing.

A worker's watch looks (``worker.process``): when the broker holds no run message at all, queued nor
delivered, a ``q`` mark names a message that no longer exists. Seen so on two looks in a row (a message
moving from the queue to a worker is briefly in neither), the mark is dropped, if it is still the same
publish's (its nonce), and the practice queued again through the work queue's add, as any report would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from reconciler import logs

log = logs.get_logger()


class LostQueue(Protocol):
    def queued_marks(self, *, broker_queue: str) -> dict[int, str] | None: ...
    def forget(self, practice_id: int, nonce: str | None = None) -> None: ...


@dataclass
class LostMessageWatch:
    """One per worker process; ``look`` on every tick of the worker's watch."""

    broker_queue: str
    seen: dict[int, str] = field(default_factory=dict)

    def look(self, queue: LostQueue, requeue: Callable[[int], None]) -> list[int]:
        """Queue again the practices whose queued mark outlived its message; returns them."""
        marks = queue.queued_marks(broker_queue=self.broker_queue)
        if marks is None:
            self.seen = {}
            return []
        lost = [pid for pid, nonce in marks.items() if self.seen.get(pid) == nonce]
        self.seen = {pid: nonce for pid, nonce in marks.items() if pid not in lost}
        for pid in lost:
            queue.forget(pid, marks[pid])  # only that publish's mark: a newer one stands
            log.warning("queued_mark_lost", practice_id=pid)
            requeue(pid)
        return lost


__all__ = ["LostMessageWatch", "LostQueue"]

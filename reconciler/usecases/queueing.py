"""Publishing a run the work queue asked for, so that no queued mark outlives its message.

``WorkQueue.done`` answering "one more run" leaves a pending mark behind; the caller's publish must
then confirm it (the broker has the message) or forget it (it does not), or the next reports would
fold into a task that was never sent. Workers (``tasks.reconcile``) and the operator's in-process
runs (``worker.admin``) publish that run through here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from reconciler import logs
from reconciler.core.errors import CoordinationUnavailable

log = logs.get_logger()


class FollowUpQueue(Protocol):
    def follow_up_delay(self, practice_id: int) -> float: ...
    def confirm_follow_up(self, practice_id: int) -> bool: ...
    def forget_follow_up(self, practice_id: int) -> None: ...


def publish_follow_up(queue: FollowUpQueue, practice_id: int, publish: Callable[[float | None], Any]) -> None:
    """Publish the one more run (``publish(countdown)``); a publish that fails takes its mark back and re-raises.

    The report that asked for it came after the run's answer and names the GUID still in use: it is
    re-checked when that answer stops being fresh (the re-check delay, doubling with each
    confirmation), not at once; with no answer (nothing fresh), at once."""
    try:
        delay = queue.follow_up_delay(practice_id)
    except CoordinationUnavailable:
        delay = 0.0  # the publish that follows meets the same store; at once is the safe side
    try:
        publish(delay or None)
    except BaseException:
        queue.forget_follow_up(practice_id)
        log.warning("follow_up_publish_failed", practice_id=practice_id)
        raise
    queue.confirm_follow_up(practice_id)

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

log = logs.get_logger()


class FollowUpQueue(Protocol):
    def confirm_follow_up(self, practice_id: int) -> bool: ...
    def forget_follow_up(self, practice_id: int) -> None: ...


def publish_follow_up(queue: FollowUpQueue, practice_id: int, publish: Callable[[], Any]) -> None:
    """Publish the one more run; a publish that fails takes its mark back and re-raises."""
    try:
        publish()
    except BaseException:
        queue.forget_follow_up(practice_id)
        log.warning("follow_up_publish_failed", practice_id=practice_id)
        raise
    queue.confirm_follow_up(practice_id)

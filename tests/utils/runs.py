"""The ``Runs`` port over the separate ports, one call each: the tests' own coordination for a run.

Production folds a run's coordination into three Lua round trips (``RedisRuns``). The verdict tests
run each case over both: ``RedisRuns`` against a throw-away Valkey, and this one over an in-memory
403 ledger the test sets by hand and no work queue; ``tests/integration/test_runs.py`` runs this one
over the real ``WorkQueue`` and ``RedisCoordination`` and holds ``RedisRuns`` to the same keys,
answers and marks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from reconciler.core.breaker import BreakerState
from reconciler.core.errors import CoordinationUnavailable
from reconciler.core.work import Claim, RunFinished
from reconciler.usecases.ports import Coordination, WorkQueue

log = structlog.get_logger()


@dataclass
class PortRuns:
    """``Runs`` over the separate ports, one call each, with each port's failure handled as production's."""

    queue: WorkQueue | None
    coordination: Coordination | None

    @property
    def lock_seconds(self) -> float:
        return getattr(self.queue, "lock_seconds", 60)

    def renew(self, claim: Claim) -> bool:
        renew = getattr(self.queue, "renew", None)
        return renew(claim) if renew is not None else True

    def begin(self, practice_id: int, token: str | None = None) -> tuple[Claim | None, list[BreakerState] | None,
                                                                        datetime | None]:
        claim = self.queue.start(practice_id, token=token) if self.queue is not None else None
        since = None
        if self.coordination is not None:
            try:
                since = self.coordination.confirmed_since(practice_id)
            except CoordinationUnavailable as exc:
                log.warning("forbidden_ledger_unavailable", practice_id=practice_id, error=str(exc))
        return claim, None, since

    def answered(self, practice_id: int, *, noted: bool, guid: str | None, since: datetime | None) -> tuple[int, int]:
        if noted and self.coordination is not None:
            _best_effort(self.coordination.note_answered, practice_id)
        # Read after the mark: see ``reconcile``'s ask step.
        ms = self.queue.now_ms() if self.queue is not None else 0
        forbidden = 0
        if guid is not None and self.coordination is not None:
            try:
                forbidden = self.coordination.forbidden_count(guid, since=since)
            except CoordinationUnavailable as exc:
                # Without the ledger we cannot tell persistence; the next run will.
                log.warning("forbidden_ledger_unavailable", practice_id=practice_id, error=str(exc))
        return ms, forbidden

    def finish(self, practice_id: int, claim: Claim | None, *, current_guid: str, answered_ms: int, noted: bool,
               replaced_guid: str | None = None, confirmed: bool | None = None, past_guids: Sequence[str] = (),
               breaker_closing: bool = False, finished: RunFinished | None = None) -> tuple[bool, bool]:
        # ``finished`` is not published: nobody subscribes to the tests' in-memory runs (the verdict
        # tests' ``world[valkey]`` publishes it through ``RedisRuns``).
        if noted and self.coordination is not None:
            _best_effort(self.coordination.note_reconciled, practice_id,
                         current_guid=current_guid, replaced_guid=replaced_guid, confirmed=confirmed,
                         past_guids=past_guids)
        again = self.queue.done(claim, current_guid, answered_ms) if claim is not None and self.queue is not None else False
        return again, breaker_closing


def _best_effort(call: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except CoordinationUnavailable as exc:
        log.warning("coordination_update_failed", practice_id=args[0] if args else None, error=str(exc))

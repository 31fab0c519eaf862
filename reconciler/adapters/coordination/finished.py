"""A run finished: one pub/sub message, for the reports that wait on it (``POST /v1/reports`` with
``wait_seconds``).

The after-run step (``tasks.reconcile``, the operator's in-process runs in ``worker.admin``) calls
``announce_finished``; ``serve`` holds one subscription per process (``worker.serve.waits``) and hands
each message to the reports waiting on the GUID the run began with. Nothing polls the database.

A message is lost when no server listens at that moment, which is harmless: a waiting report then
answers ``settled: false`` when its wait ends, and the reconciliation itself is unaffected.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis as redis_lib

from reconciler.adapters.coordination import keys
from reconciler.core.errors import CoordinationUnavailable


@dataclass(frozen=True)
class RunFinished:
    practice_id: int
    guid: str  # the GUID the run began with: the one a waiting report named
    current_guid: str  # the GUID to use now
    action: str | None  # the reconciliation's action; None when the run asked Halo nothing
    answered: bool  # Halo answered (False: the run was skipped: backoff, an open breaker)
    again: bool  # one more run of the practice follows (a report the run did not answer)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, raw: bytes | str) -> RunFinished | None:
        """The message, or None for anything that is not one of ours."""
        try:
            data: Any = json.loads(raw)
            return cls(practice_id=int(data["practice_id"]), guid=str(data["guid"]),
                       current_guid=str(data["current_guid"]),
                       action=None if data["action"] is None else str(data["action"]),
                       answered=bool(data["answered"]), again=bool(data["again"]))
        except (ValueError, KeyError, TypeError):
            return None

    def settles(self, guid: str) -> bool:
        """Whether this run answers a report of ``guid``: it left that GUID, or Halo answered and no
        further run is queued for the practice."""
        if self.current_guid != guid:
            return True
        return self.answered and not self.again


def announce_finished(redis: Any, finished: RunFinished) -> None:
    """Publish the finished run on ``keys.runs_finished()``; raises CoordinationUnavailable."""
    try:
        redis.publish(keys.runs_finished(), finished.to_json())
    except redis_lib.RedisError as exc:
        raise CoordinationUnavailable(f"the finished run was not announced: {type(exc).__name__}") from exc

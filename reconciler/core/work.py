"""Values of the work queue's promise (client-go's workqueue), shared by its adapter and its callers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ANY_GUID = "*"  # a queued mark that names no GUID (sweeps, manual runs): any run answers it


@dataclass(frozen=True)
class Claim:
    """The right to run one reconciliation of a practice (or, if not ``granted``, how long to wait)."""

    practice_id: int
    token: str
    granted: bool
    retry_in_ms: int = 0
    taken_over: bool = False  # the lock was this same token's: an earlier delivery died holding it


@dataclass(frozen=True)
class RunFinished:
    """A run finished: what the reports waiting on its GUID hear (``POST /v1/reports`` with
    ``wait_seconds``). Published by the run's last round trip (``RedisRuns.finish``), which alone knows
    ``again``; ``serve`` hands it to the reports waiting on ``guid`` (``worker.serve.waits``)."""

    practice_id: int
    guid: str  # the GUID the run began with: the one a waiting report named
    current_guid: str  # the GUID to use now
    action: str | None  # the reconciliation's action; None when the run asked Halo nothing
    answered: bool  # Halo answered (False: the run was skipped: backoff, an open breaker)
    again: bool = False  # one more run of the practice follows (a report the run did not answer)

    def to_json(self) -> str:
        return json.dumps(vars(self), separators=(",", ":"))  # its flat fields; asdict's deep copy is per run

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

"""A stingy work queue across processes and hosts, after client-go's ``util/workqueue``.

Two Redis keys per practice give client-go's promise (``dirty`` and ``processing`` sets):

* ``dirty:{id}``       the practice is queued, or was reported again while it ran. Its value is
                       the GUID the report named (``*`` for sweeps and manual runs).
* ``processing:{id}``  a reconciliation runs; the value is the run's token. It expires, so a
                       crashed worker blocks the practice for at most ``lock_seconds``; an expired
                       lock never lets two runs both switch, because the version column decides.

``add`` publishes only when the practice was neither queued nor running; ``start`` claims it;
``done`` releases it and says whether exactly one more run must follow: a report arrived while it
ran and still names the GUID in use. All three are Lua scripts, so each is one atomic round trip.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis as redis_lib

from worker import keys

ANY_GUID = "*"

_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return 1
"""

_START = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return -redis.call('PTTL', KEYS[2])
"""

_DONE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local dirty = redis.call('GET', KEYS[1])
if not dirty then return 0 end
if dirty == ARGV[2] or dirty == '*' then return 1 end
redis.call('DEL', KEYS[1])
return 0
"""


@dataclass(frozen=True)
class Claim:
    """The right to run one reconciliation of a practice (or, if not ``granted``, how long to wait)."""

    practice_id: int
    token: str
    granted: bool
    retry_in_ms: int = 0


class WorkQueue:
    def __init__(self, redis: redis_lib.Redis, *, queued_seconds: int = 3600, lock_seconds: int = 330) -> None:
        # ``queued_seconds`` bounds how long a lost publish (broker down) can block new adds: after it the
        # key expires and the next report, or the sweep, queues the practice again.
        self.redis = redis
        self.queued_seconds = queued_seconds
        self.lock_seconds = lock_seconds
        self._add = redis.register_script(_ADD)
        self._start = redis.register_script(_START)
        self._done = redis.register_script(_DONE)

    def add(self, practice_id: int, guid: str = ANY_GUID) -> bool:
        """Mark the practice for a run. True means: publish a task now (nobody else will)."""
        keys_ = [keys.dirty(practice_id), keys.processing(practice_id)]
        return bool(self._add(keys=keys_, args=[guid, self.queued_seconds]))

    def start(self, practice_id: int) -> Claim:
        token = uuid.uuid4().hex
        keys_ = [keys.dirty(practice_id), keys.processing(practice_id)]
        answer = int(self._start(keys=keys_, args=[token, self.lock_seconds]))
        if answer == 1:
            return Claim(practice_id, token, True)
        return Claim(practice_id, token, False, retry_in_ms=max(-answer, 1000))

    def done(self, claim: Claim, current_guid: str) -> bool:
        """Release the claim. True means: publish exactly one more run."""
        keys_ = [keys.dirty(claim.practice_id), keys.processing(claim.practice_id)]
        return bool(self._done(keys=keys_, args=[claim.token, current_guid]))

    def forget(self, practice_id: int) -> None:
        """Drop a queued mark whose publish failed, so the next report can try again at once."""
        self.redis.delete(keys.dirty(practice_id))

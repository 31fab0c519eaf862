"""A stingy work queue across processes and hosts, after client-go's ``util/workqueue``.

Two Redis keys per practice give client-go's promise (``dirty`` and ``processing`` sets):

* ``dirty:{id}``       the practice is queued, or was reported again while it ran. Its value is
                       ``GUID|ms``: the GUID the report named (``*`` for sweeps and manual runs)
                       and when, on the Redis server's clock.
* ``processing:{id}``  a reconciliation runs; the value is the run's token (its Celery task id).
                       A redelivery of the same message takes the lock over at once (the broker
                       redelivers only when the delivery holding it died); otherwise it expires, so
                       a crashed worker blocks the practice for at most ``lock_seconds``. An
                       expired lock never lets two runs both switch: the version column decides.

``add`` publishes only when the practice was neither queued nor running; ``start`` claims it;
``done`` releases it and says whether exactly one more run must follow: a report arrived while it
ran after Halo had answered this run and still names the GUID in use (a report that came while we
were still asking Halo is answered by this run). All three are Lua scripts, one round trip each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis as redis_lib

from reconciler.adapters.coordination import keys

ANY_GUID = "*"

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

_ADD = _NOW_MS + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. now, 'EX', ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return 1
"""

_START = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 1
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 2
end
return -redis.call('PTTL', KEYS[2])
"""

_DONE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local dirty = redis.call('GET', KEYS[1])
if not dirty then return 0 end
local sep = string.find(dirty, '|', 1, true)
local guid = dirty
local at = 0
if sep then
  guid = string.sub(dirty, 1, sep - 1)
  at = tonumber(string.sub(dirty, sep + 1)) or 0
end
if (guid == ARGV[2] or guid == '*') and at > tonumber(ARGV[3]) then return 1 end
redis.call('DEL', KEYS[1])
return 0
"""

_TIME_MS = _NOW_MS + "return now"


@dataclass(frozen=True)
class Claim:
    """The right to run one reconciliation of a practice (or, if not ``granted``, how long to wait)."""

    practice_id: int
    token: str
    granted: bool
    retry_in_ms: int = 0
    taken_over: bool = False  # the lock was this same token's: an earlier delivery died holding it


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
        self._time = redis.register_script(_TIME_MS)

    def add(self, practice_id: int, guid: str = ANY_GUID) -> bool:
        """Mark the practice for a run. True means: publish a task now (nobody else will)."""
        keys_ = [keys.dirty(practice_id), keys.processing(practice_id)]
        return bool(self._add(keys=keys_, args=[guid, self.queued_seconds]))

    def start(self, practice_id: int, token: str | None = None) -> Claim:
        """Claim the practice. ``token`` names the run; a broker message delivered again after its
        worker died passes the same token (its task id) and takes the dead delivery's lock over
        instead of waiting for it to expire."""
        token = token or uuid.uuid4().hex
        keys_ = [keys.dirty(practice_id), keys.processing(practice_id)]
        answer = int(self._start(keys=keys_, args=[token, self.lock_seconds]))
        if answer in (1, 2):
            return Claim(practice_id, token, True, taken_over=answer == 2)
        return Claim(practice_id, token, False, retry_in_ms=max(-answer, 1000))

    def now_ms(self) -> int:
        """The Redis server's clock, which every report is stamped with (hosts' clocks may differ)."""
        return int(self._time(keys=[], args=[]))

    def done(self, claim: Claim, current_guid: str, answered_ms: int = 0) -> bool:
        """Release the claim. True means: publish exactly one more run.

        ``answered_ms`` is when this run had Halo's answer and had marked the practice fresh
        (``now_ms``); reports stamped up to it are answered already. 0 re-runs for any pending
        report that names the GUID in use.
        """
        keys_ = [keys.dirty(claim.practice_id), keys.processing(claim.practice_id)]
        return bool(self._done(keys=keys_, args=[claim.token, current_guid, answered_ms]))

    def forget(self, practice_id: int) -> None:
        """Drop a queued mark whose publish failed, so the next report can try again at once."""
        self.redis.delete(keys.dirty(practice_id))

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

import redis as redis_lib

from reconciler.adapters.coordination import keys, scripts
from reconciler.core.work import ANY_GUID, Claim

__all__ = ["ANY_GUID", "Claim", "WorkQueue"]


class WorkQueue:
    def __init__(self, redis: redis_lib.Redis, *, queued_seconds: int = 3600, lock_seconds: int = 330) -> None:
        # ``queued_seconds`` bounds how long a lost publish (broker down) can block new adds: after it the
        # key expires and the next report, or the sweep, queues the practice again.
        self.redis = redis
        self.queued_seconds = queued_seconds
        self.lock_seconds = lock_seconds
        self._add = redis.register_script(scripts.load("queue_add"))
        self._start = redis.register_script(scripts.load("queue_start"))
        self._done = redis.register_script(scripts.load("queue_done"))
        self._time = redis.register_script(scripts.load("now_ms"))

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

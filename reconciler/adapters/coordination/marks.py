"""What the coordination store knows of each practice besides its queue: the GUID index (which
practice a GUID belongs to, and whether it is the one in use) and the freshness mark (Halo answered
about the practice moments ago, so a report only counts). ``RedisCoordination`` is the use cases'
``Coordination`` port over them and the 403 ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import redis as redis_lib

from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.ledger import ForbiddenLedger


def index_practice(redis: redis_lib.Redis, practice_id: int, current: str, past: Iterable[str]) -> None:
    """Record which practice each GUID belongs to, and whether it is the one in use."""
    mapping = {guid: f"{practice_id}:stale" for guid in past if guid != current}
    mapping[current] = f"{practice_id}:current"
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.guid_index(), mapping=mapping)
    for guid in mapping:
        pipe.delete(keys.unknown_guid(guid))
    pipe.execute()


def note_verified(redis: redis_lib.Redis, practice_id: int, *, confirmed: bool | None, fresh_seconds: int) -> None:
    """After Halo answered for a practice: the tail of a storm only counts, for ``fresh_seconds``.

    ``confirmed`` is True when Halo confirmed the GUID now in use (unchanged, or just switched to):
    403s that keep coming then point at something else (``forbidden_persists``). False when Halo
    answered but a person must act (held, not found, ambiguous, flapping). None when Halo did not
    answer: nothing is fresh, the next report may retry.
    """
    pipe = redis.pipeline(transaction=False)
    if confirmed is None or fresh_seconds <= 0:
        pipe.delete(keys.fresh(practice_id))
    else:
        pipe.set(keys.fresh(practice_id), "confirmed" if confirmed else "answered", ex=fresh_seconds)
    pipe.delete(keys.since_verified(practice_id), keys.persists_noted(practice_id))
    pipe.execute()


class RedisGuidIndex:
    def __init__(self, redis: redis_lib.Redis) -> None:
        self.redis = redis

    def index(self, practice_id: int, current: str, past: Iterable[str]) -> None:
        index_practice(self.redis, practice_id, current, past)


class RedisCoordination:
    def __init__(self, redis: redis_lib.Redis, *, window_seconds: int, fresh_seconds: int) -> None:
        self.redis = redis
        self.fresh_seconds = fresh_seconds
        self.ledger = ForbiddenLedger(redis, window_seconds=window_seconds)

    def forbidden_count(self, guid: str, *, since: datetime | None) -> int:
        return self.ledger.count(guid, since=since.timestamp() if since else None)

    def note_answered(self, practice_id: int) -> None:
        note_verified(self.redis, practice_id, confirmed=False, fresh_seconds=self.fresh_seconds)

    def note_reconciled(self, practice_id: int, *, current_guid: str, replaced_guid: str | None,
                        confirmed: bool | None) -> None:
        if replaced_guid and current_guid:
            index_practice(self.redis, practice_id, current_guid, [replaced_guid])
        note_verified(self.redis, practice_id, confirmed=confirmed, fresh_seconds=self.fresh_seconds)

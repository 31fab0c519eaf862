"""What the coordination store knows of each practice besides its queue: the GUID index (which
practice a GUID belongs to, and whether it is the one in use) and the re-check marks (Halo answered
about the practice moments ago, so a report queues one delayed re-check instead of a run at once). ``RedisCoordination`` is the use cases'
``Coordination`` port over them and the 403 ledger.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache

from reconciler.adapters.coordination import keys, scripts
from reconciler.adapters.coordination.client import CoordinationClient
from reconciler.core import backoff
from reconciler.adapters.coordination.ledger import ForbiddenLedger


def index_practice(redis: CoordinationClient, practice_id: int, current: str, past: Iterable[str]) -> None:
    """Record which practice each GUID belongs to, and whether it is the one in use."""
    mapping = index_entries(practice_id, current, past)
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.guid_index(), mapping=mapping)
    for guid in mapping:
        pipe.delete(keys.unknown_guid(guid))
    pipe.execute()


# "An hour without reports" ends a run of confirmations: the next one re-checks at the minimum again.
CONFIRMATIONS_SECONDS = 3600
# A queued re-check folds later reports for this long after it is due (its task starting late).
RECHECK_SLACK_MS = 60_000


def recheck_delay(confirmations: int, *, min_seconds: float, max_seconds: float) -> float:
    """client-go's rate-limited requeue: min after the first confirmation, doubling up to max."""
    return backoff.exponential(max(confirmations - 1, 0), base=min_seconds, cap=max_seconds)


@cache
def recheck_delays_ms(*, min_seconds: float, max_seconds: float) -> tuple[int, ...]:
    """``recheck_delay`` after 1, 2, ... confirmations, in ms, up to the first that stays (the cap):
    the numbers ``lua/note_reconciled.lua`` is handed, so the formula lives here only (computed once
    per pair of bounds: every run hands them)."""
    delays: list[int] = []
    for confirmations in range(1, 35):
        seconds = recheck_delay(confirmations, min_seconds=min_seconds, max_seconds=max_seconds)
        delays.append(max(int(seconds * 1000), 1))
        if seconds >= max_seconds:
            break
    return tuple(delays)


def note_args(practice_id: int, *, confirmed: bool | None, min_seconds: float, max_seconds: float,
              restart: bool = False, index: dict[str, str] | None = None) -> tuple[list[str], list[object]]:
    """``lua/note_reconciled.lua``'s keys and arguments: ``index`` is the GUID index entries to write."""
    entries = index or {}
    keys_ = [keys.fresh(practice_id), keys.confirmations(practice_id), keys.since_verified(practice_id),
             keys.persists_noted(practice_id), keys.guid_index()]
    flag = "" if confirmed is None else "1" if confirmed else "0"
    args: list[object] = [flag, "1" if restart else "", int(time.time() * 1000), CONFIRMATIONS_SECONDS,
                          keys.unknown_guid(""), len(entries)]
    for guid, entry in entries.items():
        args += [guid, entry]
    return keys_, [*args, *recheck_delays_ms(min_seconds=min_seconds, max_seconds=max_seconds)]


def index_entries(practice_id: int, current: str, past: Iterable[str]) -> dict[str, str]:
    """The GUID index entries of a practice: ``current`` in use, every GUID it left stale."""
    mapping = {guid: f"{practice_id}:stale" for guid in past if guid != current}
    mapping[current] = f"{practice_id}:current"
    return mapping


def note_verified(redis: CoordinationClient, practice_id: int, *, confirmed: bool | None, min_seconds: float,
                  max_seconds: float, restart: bool = False) -> None:
    """After Halo answered for a practice: the next reports re-check it once the delay has passed.

    No deaf window: while ``halo:fresh:{id}`` lives, the first report queues one re-check for the
    moment it expires (``lua/report.lua``); after it, reports queue a run at once. The delay is
    ``recheck_delay`` of the consecutive confirmations (``halo:confirmations:{id}``, forgotten after an
    hour without an answer, so an hour without reports). ``restart`` (a switch) starts them again at
    the minimum, with the 403 counters: the GUID in use is a new one.

    ``confirmed`` is True when Halo confirmed the GUID now in use (unchanged, or just switched to):
    403s that keep coming then point at something else (``forbidden_persists``). False when Halo
    answered but a person must act (held, not found, ambiguous, flapping). None when Halo did not
    answer: nothing is fresh, the next report runs at once (and meets the practice's backoff).
    One round trip: ``lua/note_reconciled.lua`` (which the end of a reconciliation folds in too).
    """
    keys_, args = note_args(practice_id, confirmed=confirmed, min_seconds=min_seconds, max_seconds=max_seconds,
                            restart=restart)
    scripts.registered(redis, "note_reconciled")(keys=keys_, args=args)


def note_answered(redis: CoordinationClient, practice_id: int) -> None:
    """Halo has answered the run now going on. A re-check queued before this answer is answered by
    this run; a report from here on folds into the run, whose ``done()`` decides (``lua/report.lua``)."""
    redis.delete(keys.recheck(practice_id))


def confirmed_since(redis: CoordinationClient, practice_id: int) -> datetime | None:
    """When the practice's consecutive confirmations began (None: none in the last hour)."""
    raw = redis.hget(keys.confirmations(practice_id), "since_ms")
    return datetime.fromtimestamp(int(raw) / 1000, UTC) if raw is not None else None


class RedisGuidIndex:
    def __init__(self, redis: CoordinationClient) -> None:
        self.redis = redis

    def index(self, practice_id: int, current: str, past: Iterable[str]) -> None:
        index_practice(self.redis, practice_id, current, past)


class RedisCoordination:
    def __init__(self, redis: CoordinationClient, *, window_seconds: int, recheck_min_seconds: float,
                 recheck_max_seconds: float) -> None:
        self.redis = redis
        self.recheck_min_seconds = recheck_min_seconds
        self.recheck_max_seconds = recheck_max_seconds
        self.ledger = ForbiddenLedger(redis, window_seconds=window_seconds)
        self._note = scripts.registered(redis, "note_reconciled")

    def forbidden_count(self, guid: str, *, since: datetime | None) -> int:
        return self.ledger.count(guid, since=since.timestamp() if since else None)

    def confirmed_since(self, practice_id: int) -> datetime | None:
        return confirmed_since(self.redis, practice_id)

    def note_answered(self, practice_id: int) -> None:
        note_answered(self.redis, practice_id)

    def note_reconciled(self, practice_id: int, *, current_guid: str, replaced_guid: str | None,
                        confirmed: bool | None, past_guids: Sequence[str] = ()) -> None:
        keys_, args = self.note_args(practice_id, current_guid=current_guid, replaced_guid=replaced_guid,
                                     confirmed=confirmed, past_guids=past_guids)
        self._note(keys=keys_, args=args)

    def note_args(self, practice_id: int, *, current_guid: str, replaced_guid: str | None, confirmed: bool | None,
                  past_guids: Sequence[str] = ()) -> tuple[list[str], list[object]]:
        """``lua/note_reconciled.lua``'s keys and arguments for this answer (the end of a run folds them in)."""
        index = None
        if current_guid and confirmed is not None:
            # Every answer, not only a switch: an index write lost at switch time (a Redis blip) would
            # otherwise leave a replaced GUID "current", costing a Find sites call per report naming it.
            index = index_entries(practice_id, current_guid, [*past_guids, *([replaced_guid] if replaced_guid else [])])
        return note_args(practice_id, confirmed=confirmed, min_seconds=self.recheck_min_seconds,
                         max_seconds=self.recheck_max_seconds, restart=bool(replaced_guid), index=index)

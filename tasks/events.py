"""403 events: from the application's report to at most one pending reconciliation per practice.

The ``Reporter`` runs in the application process (``worker.hooks``); the tasks below run in the
worker. Outcomes of one report (the first element the Lua script returns):

=============  =====================================================================================
``publish``    first report for the practice: a ``halo.reconcile_practice`` task is published
``folded``     the practice is already queued or running (a running one will re-run once if needed)
``counted``    Halo was asked about the practice moments ago: the report only counts toward the
               403 persistence rule (a change is caught when the freshness window ends)
``persists``   ... Halo had confirmed the GUID in use, and this report crossed the threshold: open
               ``forbidden_persists`` (no Halo call)
``stale``      the GUID is one a practice has left: counted, no Halo call
``unknown``    no practice has the GUID: counted, nothing else
``lookup``     the GUID is not in the Redis index (first sight, or Redis lost it): a worker task
               looks it up in the database and re-reports it; concurrent misses fold for a few seconds
=============  =====================================================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis as redis_lib
import structlog

from models import Practice, TicketKind, TicketReason
from reconciler.adapters.coordination import keys

log = structlog.get_logger()

LOOKUP_FOLD_SECONDS = 10
UNKNOWN_SECONDS = 600
INTEGRATOR_WIDE_FOLD_SECONDS = 300

_REPORT = """
local function out(outcome, pid)
  redis.call('HINCRBY', KEYS[5], outcome, 1)
  return {outcome, pid}
end
local guid = ARGV[1]
local entry = redis.call('HGET', KEYS[1], guid)
if not entry then
  if redis.call('EXISTS', KEYS[3]) == 1 then return out('unknown', '') end
  if redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[9]) then return out('lookup', '') end
  return out('folded', '')
end
local sep = string.find(entry, ':', 1, true)
local pid = string.sub(entry, 1, sep - 1)
if string.sub(entry, sep + 1) ~= 'current' then return out('stale', pid) end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local fresh = redis.call('GET', ARGV[6] .. pid)
if fresh then
  local n = redis.call('INCR', ARGV[8] .. pid)
  redis.call('EXPIRE', ARGV[8] .. pid, ARGV[2])
  if fresh == 'confirmed' and n == tonumber(ARGV[7]) then return out('persists', pid) end
  return out('counted', pid)
end
local dirty = ARGV[3] .. pid
if redis.call('EXISTS', dirty) == 1 then return out('folded', pid) end
local t = redis.call('TIME')
redis.call('SET', dirty, guid .. '|' .. (t[1] * 1000 + math.floor(t[2] / 1000)), 'EX', ARGV[5])
if redis.call('EXISTS', ARGV[4] .. pid) == 1 then return out('folded', pid) end
return out('publish', pid)
"""

Publish = Callable[[str, list[Any], str], None]


def celery_publish(timeout: float) -> Publish:
    """Publish by task name (no task module imported into the application), with a bounded retry."""

    def publish(name: str, args: list[Any], queue: str) -> None:
        from worker.celery_app import app

        app.send_task(
            name,
            args=args,
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": timeout / 2, "interval_max": timeout / 2},
        )

    return publish


@dataclass
class Reporter:
    redis: redis_lib.Redis
    publish: Publish
    threshold: int = 3
    window_seconds: int = 3600
    queued_seconds: int = 3600
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._script = self.redis.register_script(_REPORT)

    @classmethod
    def from_settings(cls, *, bounded: bool = False) -> "Reporter":
        from worker.config import get_settings
        from worker.coordination import get_redis

        settings = get_settings()
        return cls(
            redis=get_redis(bounded=bounded),
            publish=celery_publish(settings.report_timeout_seconds),
            threshold=settings.forbidden_threshold,
            window_seconds=settings.forbidden_window_seconds,
        )

    def report(self, guid: str, message: str | None, context: dict[str, Any]) -> str:
        from worker.hooks import is_integrator_wide

        cause = is_integrator_wide(message)
        if cause is not None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(keys.integrator_forbidden(str(cause)), "1", nx=True, ex=INTEGRATOR_WIDE_FOLD_SECONDS)
            pipe.hincrby(keys.report_outcomes(), "integrator_wide", 1)
            first, _ = pipe.execute()
            if first:
                self.publish("halo.note_integrator_forbidden", [str(cause), message], "events")
                return "integrator_wide"
            return "folded"
        bucket = int(self.clock() // 60)
        outcome, pid = self._script(
            keys=[
                keys.guid_index(),
                keys.forbidden_bucket(guid, bucket),
                keys.unknown_guid(guid),
                keys.lookup(guid),
                keys.report_outcomes(),
            ],
            args=[
                guid,
                self.window_seconds + 60,
                keys.dirty(""),
                keys.processing(""),
                self.queued_seconds,
                keys.fresh(""),
                self.threshold,
                keys.since_verified(""),
                LOOKUP_FOLD_SECONDS,
            ],
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        pid = pid.decode() if isinstance(pid, bytes) else str(pid)
        try:
            if outcome == "publish":
                self.publish("halo.reconcile_practice", [int(pid), "forbidden"], "reconcile")
            elif outcome == "persists":
                self.publish("halo.note_forbidden_persists", [int(pid)], "events")
            elif outcome == "lookup":
                self.publish("halo.lookup_forbidden", [guid, message], "events")
        except Exception:
            # The mark we set would fold every later report into a task that was never sent.
            if outcome == "publish":
                self.redis.delete(keys.dirty(int(pid)))
            elif outcome == "lookup":
                self.redis.delete(keys.lookup(guid))
            raise
        return outcome


# --- the GUID index ----------------------------------------------------------------------------


def index_practice(redis: redis_lib.Redis, practice_id: int, current: str, past: list[str]) -> None:
    """Record which practice each GUID belongs to, and whether it is the one in use."""
    mapping = {guid: f"{practice_id}:stale" for guid in past if guid != current}
    mapping[current] = f"{practice_id}:current"
    pipe = redis.pipeline(transaction=False)
    pipe.hset(keys.guid_index(), mapping=mapping)
    for guid in mapping:
        pipe.delete(keys.unknown_guid(guid))
    pipe.execute()


def note_verified(redis: redis_lib.Redis, practice_id: int, *, confirmed: bool | None, fresh_seconds: int) -> None:
    """After a reconciliation Halo answered: the tail of a storm only counts, for ``fresh_seconds``.

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
    pipe.delete(keys.since_verified(practice_id))
    pipe.execute()


def index_from_db(redis: redis_lib.Redis, practice: Practice) -> None:
    from reconciler.adapters import store
    from worker import db

    with db.new_session() as session:
        past = [h.guid for h in store.guid_history(session, practice_id=practice.id)]  # type: ignore[arg-type]
    index_practice(redis, practice.id, practice.halo_guid, past)  # type: ignore[arg-type]


# --- worker tasks ------------------------------------------------------------------------------

from worker.celery_app import app  # noqa: E402
from worker.messages import GuidText, PracticeId, ReportMessage, parsed_arguments  # noqa: E402

IntegratorCause = Literal["ip_not_allowed", "quota_exceeded"]


@app.task(name="halo.lookup_forbidden", acks_late=True, ignore_result=True)
@parsed_arguments
def lookup_forbidden(guid: GuidText, message: ReportMessage | None) -> str | None:
    """A GUID the index did not know: find its practice in the database, index it, report again."""
    from reconciler.adapters import store
    from worker import db
    from worker.coordination import get_redis

    redis = get_redis()
    db.ensure_schema()
    with db.new_session() as session:
        practice = store.find_practice_by_guid(session, guid=guid)
        if practice is not None:
            session.expunge(practice)
    if practice is None:
        pipe = redis.pipeline(transaction=False)
        pipe.set(keys.unknown_guid(guid), "1", ex=UNKNOWN_SECONDS)
        pipe.hincrby(keys.report_outcomes(), "unknown", 1)
        pipe.delete(keys.lookup(guid))
        pipe.execute()
        log.info("forbidden_unknown", guid=guid)
        return "unknown"
    index_from_db(redis, practice)
    redis.delete(keys.lookup(guid))
    return Reporter.from_settings().report(guid, message, {})


@app.task(name="halo.note_forbidden_persists", acks_late=True, ignore_result=True)
@parsed_arguments
def note_forbidden_persists(practice_id: PracticeId) -> None:
    """403s keep coming for a GUID Halo just confirmed: a person must ask Halo why."""
    from reconciler.adapters import tickets
    from worker import db
    from worker.config import get_settings

    settings = get_settings()
    db.ensure_schema()
    with db.new_session() as session:
        tickets.open_or_count(
            session,
            kind=TicketKind.CONTACT_HALO_SUPPORT,
            reason=TicketReason.FORBIDDEN_PERSISTS,
            practice_id=practice_id,
            detail=(
                f"{settings.forbidden_threshold} or more 403s within the hour for a GUID Halo confirms as current; "
                "ask Halo support why queries to this practice are refused."
            ),
            now=datetime.now(UTC),
        )
        session.commit()
    log.info("forbidden_persists_noted", practice_id=practice_id)


@app.task(name="halo.note_integrator_forbidden", acks_late=True, ignore_result=True)
@parsed_arguments
def note_integrator_forbidden(cause: IntegratorCause, message: ReportMessage | None) -> None:
    """A 403 whose message blames the caller's IP or the quota: one integrator-wide ticket."""
    from reconciler.adapters import tickets
    from worker import db

    reason = TicketReason(cause)
    what = "the caller's IP address is not allow-listed" if cause == "ip_not_allowed" else "the call quota is exhausted"
    db.ensure_schema()
    with db.new_session() as session:
        tickets.open_or_count(
            session,
            kind=TicketKind.CONTACT_HALO_SUPPORT,
            reason=reason,
            practice_id=None,
            detail=f"Halo answers 403 because {what} ({(message or '')[:200]}); contact Halo support.",
            now=datetime.now(UTC),
        )
        session.commit()

"""The report path in the application's process: one 403 report, one round trip in the common case.

``Reporter.report`` runs ``lua/report.lua`` (GUID index, 403 ledger, the practice's queued mark)
and publishes a task only for the outcomes that need a worker: the first report of a storm
(``publish``), a GUID the index does not know (``lookup``), a crossed persistence threshold
(``persists``), and the first integrator-wide 403 of a few minutes. ``publish`` is handed in (the
shell's Celery publisher), so this module knows no task but by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from reconciler.adapters.coordination import keys, scripts
from reconciler.adapters.coordination.ledger import bucket, bucket_lifetime
from reconciler.adapters.coordination.marks import RECHECK_SLACK_MS
from reconciler.adapters.coordination.workqueue import WorkQueue, new_nonce
from reconciler.core.errors import CoordinationUnavailable
from reconciler.core.halo_errors import integrator_wide_cause
from reconciler.core.vocabulary import ReportOutcome

LOOKUP_FOLD_SECONDS = 10
UNKNOWN_SECONDS = 600
INTEGRATOR_WIDE_FOLD_SECONDS = 300

Publish = Callable[..., None]  # (task name, args, queue, **options such as countdown)


class PublishFailed(Exception):
    """The broker did not take a task the report needed; the marks it set were undone."""


@dataclass
class Reporter:
    redis: redis_lib.Redis
    publish: Publish
    threshold: int = 3
    window_seconds: int = 3600
    # The queued mark's lifetimes (``workqueue``): pending, a little past this publisher's bound;
    # confirmed, as long as the broker may take to deliver the message again.
    pending_seconds: int = 15
    queued_seconds: int = 3600
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._script = self.redis.register_script(scripts.load("report"))
        self._queue = WorkQueue(self.redis, pending_seconds=self.pending_seconds,
                                queued_seconds=self.queued_seconds)

    def report(self, guid: str, message: str | None) -> ReportOutcome:
        """Take one report of a well-formed, canonical GUID. Raises ``redis`` errors and ``PublishFailed``."""
        cause = integrator_wide_cause(message)
        if cause is not None:
            return self._integrator_wide(str(cause), message)
        nonce = new_nonce()
        raw_outcome, raw_pid, raw_delay = self._script(
            keys=[
                keys.guid_index(),
                keys.forbidden_bucket(guid, bucket(self.clock())),
                keys.unknown_guid(guid),
                keys.lookup(guid),
                keys.report_outcomes(),
            ],
            args=[
                guid,
                bucket_lifetime(self.window_seconds),
                keys.dirty(""),
                keys.processing(""),
                self.pending_seconds,
                keys.fresh(""),
                self.threshold,
                keys.since_verified(""),
                LOOKUP_FOLD_SECONDS,
                keys.persists_noted(""),
                self.window_seconds,
                nonce,
                keys.recheck(""),
                RECHECK_SLACK_MS,
            ],
        )
        outcome = ReportOutcome(raw_outcome.decode() if isinstance(raw_outcome, bytes) else str(raw_outcome))
        pid = raw_pid.decode() if isinstance(raw_pid, bytes) else str(raw_pid)
        if outcome is ReportOutcome.PUBLISH:
            self._publish_reconcile(int(pid), nonce)
        elif outcome is ReportOutcome.RECHECK:
            # A run at most the re-check delay after Halo's last answer (the broker holds it until then).
            self._publish_or_undo("halo.reconcile_practice", [int(pid), "forbidden"], "reconcile", keys.recheck(int(pid)),
                                  countdown=int(raw_delay) / 1000)
        elif outcome is ReportOutcome.PERSISTS:
            self._publish_or_undo("halo.note_forbidden_persists", [int(pid)], "events", keys.persists_noted(int(pid)))
        elif outcome is ReportOutcome.LOOKUP:
            self._publish_or_undo("halo.lookup_forbidden", [guid, message], "events", keys.lookup(guid))
        return outcome

    def _publish_reconcile(self, practice_id: int, nonce: str) -> None:
        try:
            self.publish("halo.reconcile_practice", [practice_id, "forbidden"], "reconcile")
        except Exception as exc:  # whatever the broker client raised: the mark must not outlive it
            self._queue.forget(practice_id, nonce)
            raise PublishFailed(f"halo.reconcile_practice was not published: {type(exc).__name__}") from exc
        # The broker has it: the mark may now wait for a worker's claim. Should this call fail, the
        # report is still taken: the pending mark expires in seconds and a later report publishes
        # again (the claim coalesces the two runs).
        try:
            self._queue.confirm(practice_id, nonce)
        except (CoordinationUnavailable, redis_lib.RedisError):
            pass

    def _integrator_wide(self, cause: str, message: str | None) -> ReportOutcome:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.integrator_forbidden(cause), "1", nx=True, ex=INTEGRATOR_WIDE_FOLD_SECONDS)
        pipe.hincrby(keys.report_outcomes(), str(ReportOutcome.INTEGRATOR_WIDE), 1)
        first, _ = pipe.execute()
        if not first:
            return ReportOutcome.FOLDED
        self._publish_or_undo("halo.note_integrator_forbidden", [cause, message], "events",
                              keys.integrator_forbidden(cause))
        return ReportOutcome.INTEGRATOR_WIDE

    def _publish_or_undo(self, task: str, args: list[Any], queue: str, mark: str, **options: Any) -> None:
        try:
            self.publish(task, args, queue, **options)
        except Exception as exc:  # whatever the broker client raised: the mark must not outlive it
            # The mark we set would fold every later report into a task that was never sent.
            self.redis.delete(mark)
            raise PublishFailed(f"{task} was not published: {type(exc).__name__}") from exc

    def count_rejected(self) -> None:
        """A malformed report writes nothing but this count."""
        self.redis.hincrby(keys.report_outcomes(), str(ReportOutcome.REJECTED), 1)

    def note_unknown(self, guid: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.unknown_guid(guid), "1", ex=UNKNOWN_SECONDS)
        pipe.hincrby(keys.report_outcomes(), str(ReportOutcome.UNKNOWN), 1)
        pipe.delete(keys.lookup(guid))
        pipe.execute()

    def lookup_done(self, guid: str) -> None:
        self.redis.delete(keys.lookup(guid))

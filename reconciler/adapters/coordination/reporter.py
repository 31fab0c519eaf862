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

from redis.exceptions import NoScriptError

from reconciler.adapters.coordination import keys, scripts
from reconciler.adapters.coordination.ledger import bucket, bucket_lifetime
from reconciler.adapters.coordination.marks import RECHECK_SLACK_MS
from reconciler.adapters.coordination.workqueue import WorkQueue, new_nonce
from reconciler.adapters.coordination.client import CoordinationClient
from reconciler.core.errors import CoordinationError
from reconciler.core.halo_errors import integrator_wide_cause
from reconciler.core.vocabulary import ReportOutcome

LOOKUP_FOLD_SECONDS = 10
UNKNOWN_SECONDS = 600
INTEGRATOR_WIDE_FOLD_SECONDS = 300

Publish = Callable[..., None]  # (task name, args, queue, **options such as countdown)

# The script's reply, straight from its bytes (a dict lookup, cheaper on the folded path than the
# enum's lookup by value); any other spelling still goes through ``ReportOutcome``.
_OUTCOMES = {outcome.value.encode(): outcome for outcome in ReportOutcome}
# The outcomes after which a report sends nothing (the storm's common case: the hook logs none of them).
NOTHING_SENT = frozenset({ReportOutcome.FOLDED, ReportOutcome.COUNTED, ReportOutcome.STALE, ReportOutcome.UNKNOWN,
                          ReportOutcome.FOLDED_LOOKUP})


class PublishFailed(Exception):
    """The broker did not take a task the report needed; the marks it set were undone."""


@dataclass
class Reporter:
    redis: CoordinationClient
    publish: Publish
    threshold: int = 3
    window_seconds: int = 3600
    # The queued mark's lifetimes (``workqueue``): pending, a little past this publisher's bound;
    # confirmed, as long as the broker may take to deliver the message again.
    pending_seconds: int = 15
    queued_seconds: int = 3600
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._script = scripts.registered(self.redis, "report")
        self._queue = WorkQueue(self.redis, pending_seconds=self.pending_seconds,
                                queued_seconds=self.queued_seconds)
        # The hot path (a storm's folded reports) is as close to one bare command as Python allows:
        # EVALSHA straight through execute_command with the script's cached sha (``_evalsha``), and
        # every argument that does not change between reports built once, as bytes (which redis-py's
        # encoder passes through untouched). The keys still come from ``keys`` alone.
        self._execute = self.redis.execute_command  # bound once: the edge's error translation included
        self._sha = self._script.sha
        self._index_key = keys.guid_index().encode()
        self._outcomes_key = keys.report_outcomes().encode()
        self._lifetime = str(bucket_lifetime(self.window_seconds)).encode()
        self._middle = tuple(str(value).encode() for value in (
            keys.dirty(""), keys.processing(""), self.pending_seconds, keys.fresh(""), self.threshold,
            keys.since_verified(""), LOOKUP_FOLD_SECONDS, keys.persists_noted(""), self.window_seconds))
        self._tail = (keys.recheck("").encode(), str(RECHECK_SLACK_MS).encode())

    def report(self, guid: str, message: str | None) -> ReportOutcome:
        """Take one report of a well-formed, canonical GUID. Raises ``CoordinationError`` (the client's) and ``PublishFailed``."""
        cause = integrator_wide_cause(message) if message else None
        if cause is not None:
            return self._integrator_wide(str(cause), message)
        nonce = new_nonce()
        reply = self._evalsha(
            self._index_key, keys.forbidden_bucket(guid, bucket(self.clock())), keys.unknown_guid(guid),
            keys.lookup(guid), self._outcomes_key,
            guid, self._lifetime, *self._middle, nonce, *self._tail,
        )
        if not isinstance(reply, bytes):  # a client that decodes replies
            reply = str(reply).encode()
        raw_outcome, _, rest = reply.partition(b"|")
        outcome = _OUTCOMES.get(raw_outcome) or ReportOutcome(raw_outcome.decode())
        if outcome in NOTHING_SENT:
            if outcome is ReportOutcome.FOLDED and rest[:1] == b"|":  # no practice: folded into the GUID's lookup
                return ReportOutcome.FOLDED_LOOKUP
            return outcome
        pid, _, raw_delay = rest.decode().partition("|")
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

    def _evalsha(self, *keys_and_args: Any) -> Any:
        """``report.lua`` by its sha, in one round trip; loaded again if the server forgot it (a
        restart, SCRIPT FLUSH), which redis-py's ``Script.__call__`` does for us on that rare path."""
        try:
            return self._execute("EVALSHA", self._sha, 5, *keys_and_args)
        except NoScriptError:  # passed through by the client's error map for this reload
            reply = self._script(keys=keys_and_args[:5], args=keys_and_args[5:])
            self._sha = self._script.sha
            return reply

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
        except CoordinationError:
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

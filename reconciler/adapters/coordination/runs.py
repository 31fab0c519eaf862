"""One reconciliation's coordination in three round trips: the use case's ``Runs`` port over Redis.

A run touches the work queue, the breaker, the 403 ledger and the re-check marks at three moments.
Each moment is one Lua script that folds the scripts it stands for (``scripts.load``'s includes), so
every rule stays in the one script or module that owns it:

* ``begin`` (``lua/run_begin.lua``): the claim (``queue_start.lua``), the breakers' state (admission
  is decided in Python by ``reconciler.core.breaker``; only a probe takes another round trip), when
  the practice's confirmations began (the ledger count needs it) and, with the claim, the rate
  limiter's token for the run's first Halo call (``gcra.lua``; ``RateLimiter.credit`` holds it for
  this thread, and ``finish`` drops it if the run asked Halo nothing);
* ``answered`` (``lua/run_answered.lua``): the queued re-check cleared, the answer's instant on the
  server's clock, and the 403s in the buckets ``ledger.py`` chooses;
* ``finish`` (``lua/run_finish.lua``): the GUID index, confirmations and fresh mark
  (``note_reconciled.lua``), whether a breaker is open (only then does ``RedisBreaker.close`` run,
  in more round trips), the claim released (``queue_done.lua``) and the run announced to the
  reports waiting on it (``RunFinished``, published on ``keys.runs_finished()``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from reconciler.adapters.coordination import keys, scripts
from reconciler.adapters.coordination.breaker import RedisBreaker
from reconciler.adapters.coordination.marks import RedisCoordination
from reconciler.adapters.coordination.ratelimit import RateLimiter
from reconciler.adapters.coordination.workqueue import FOLLOW_UP, WorkQueue
from reconciler.core.breaker import BreakerState
from reconciler.core.work import Claim, RunFinished

_AGAIN = ',"again":false}'


class RedisRuns:
    def __init__(self, queue: WorkQueue, coordination: RedisCoordination, breaker: RedisBreaker | None,
                 limiter: RateLimiter | None = None) -> None:
        self.queue = queue
        self.coordination = coordination
        self.breaker = breaker
        self.limiter = limiter  # the Halo client's: its first call's token comes with the claim
        self.lock_seconds = queue.lock_seconds
        redis = queue.redis
        self._begin = scripts.registered(redis, "run_begin")
        self._answered = scripts.registered(redis, "run_answered")
        self._finish = scripts.registered(redis, "run_finish")

    def renew(self, claim: Claim) -> bool:
        return self.queue.renew(claim)

    def begin(self, practice_id: int, token: str | None = None) -> tuple[Claim, list[BreakerState] | None, datetime | None]:
        token = token or uuid.uuid4().hex
        breakers = self.breaker.state_keys if self.breaker is not None else []
        limiter = self.limiter
        # The script's KEYS are fixed in number; without a limiter the bucket is named and never touched.
        bucket = limiter.key if limiter is not None else keys.ratelimit("none")
        keys_ = [keys.dirty(practice_id), keys.processing(practice_id), keys.confirmations(practice_id), bucket,
                 *breakers]
        args = [token, self.queue.lock_seconds]
        if limiter is not None:
            args += [limiter.interval_us, limiter.tolerance_us]
        answer, since_ms, wait_us, *raw = self._begin(keys=keys_, args=args)
        claim = self.queue.claim_from(practice_id, token, int(answer))
        if limiter is not None and wait_us is not None:
            limiter.credit(int(wait_us))
        states = self.breaker.parse_states(raw) if self.breaker is not None else None
        since = datetime.fromtimestamp(int(since_ms) / 1000, UTC) if since_ms is not None else None
        return claim, states, since

    def answered(self, practice_id: int, *, noted: bool, guid: str | None, since: datetime | None) -> tuple[int, int]:
        buckets = self.coordination.ledger.buckets(guid, since=since.timestamp() if since else None) if guid else []
        now_ms, forbidden = self._answered(keys=[keys.recheck(practice_id), *buckets], args=["1" if noted else ""])
        return int(now_ms), int(forbidden)

    def finish(self, practice_id: int, claim: Claim | None, *, current_guid: str, answered_ms: int, noted: bool,
               replaced_guid: str | None = None, confirmed: bool | None = None, past_guids: Sequence[str] = (),
               breaker_closing: bool = False, finished: RunFinished | None = None) -> tuple[bool, bool]:
        if claim is None:
            raise ValueError("a run over Redis always holds a claim")
        if self.limiter is not None:
            self.limiter.forfeit()  # a token the run did not spend (it was gated) is not carried to another
        breakers = self.breaker.closing_keys if breaker_closing and self.breaker is not None else []
        note_keys: list[str] = []
        note_args: list[object] = []
        if noted:
            note_keys, note_args = self.coordination.note_args(
                practice_id, current_guid=current_guid, replaced_guid=replaced_guid, confirmed=confirmed,
                past_guids=past_guids)
        keys_ = [keys.dirty(practice_id), keys.processing(practice_id), *breakers, *note_keys]
        args = [len(breakers), len(note_args), claim.token, current_guid, answered_ms, FOLLOW_UP,
                self.queue.pending_seconds, *note_args]
        if finished is not None:
            args += [keys.runs_finished(), _message_head(finished)]
        again, open_ = self._finish(keys=keys_, args=args)
        return bool(again), bool(open_)


def _message_head(finished: RunFinished) -> str:
    """The message up to its last value, ``again``, which ``run_finish.lua`` appends (``true}`` or
    ``false}``): only the claim's release knows whether one more run follows."""
    body = replace(finished, again=False).to_json()
    if not body.endswith(_AGAIN):  # to_json writes the fields in their declared order, ``again`` last
        raise AssertionError(f"the run-finished message does not end with its again field: {body!r}")
    return body[: -len("false}")]

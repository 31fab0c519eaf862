"""A stingy work queue across processes and hosts, after client-go's ``util/workqueue``.

Two Redis keys per practice give client-go's promise (``dirty`` and ``processing`` sets):

* ``dirty:{id}``       the practice is queued, or was reported again while it ran. Its value is
                       ``GUID|ms|state|nonce`` (spelled once in Lua, ``lua/queued_mark.lua``, and
                       mirrored here by ``QueuedMark``): the GUID the report named (``*`` for sweeps and
                       manual runs), when (the Redis server's clock), and how far its message got.
                       No mark outlives its message: ``p`` (a publish is on its way) lives
                       ``pending_seconds``, a little longer than a publish may take, so a publisher
                       that died or failed before the broker took the message swallows later
                       reports for seconds, not an hour; the publisher's ``confirm`` turns it
                       ``q`` (the broker holds the message), which lives ``queued_seconds`` (as
                       long as the broker may take to deliver it again, its visibility timeout);
                       a failed publish ``forget``s it at once. ``r`` (reported while a run holds
                       the practice) lives as long as the run's lock; ``done`` answers it.
                       The claim consumes the mark, whatever its state.
* ``processing:{id}``  a reconciliation runs; the value is the run's token (its Celery task id).
                       A redelivery of the same message takes the lock over at once (the broker
                       redelivers only when the delivery holding it died); otherwise it expires, so
                       a crashed worker blocks the practice for at most ``lock_seconds``, which is
                       short because the run renews it while it is alive (``renew``, every third of
                       it). An expired lock never lets two runs both switch: the version column decides.

``add`` publishes only when the practice was neither queued nor running; ``start`` claims it;
``done`` releases it and says whether exactly one more run must follow: a report arrived while it
ran after Halo had answered this run and still names the GUID in use (a report that came while we
were still asking Halo is answered by this run). All three are Lua scripts, one round trip each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from reconciler.adapters.coordination import keys, scripts
from reconciler.adapters.coordination.client import CoordinationClient
from reconciler.core.work import ANY_GUID, Claim

__all__ = ["ANY_GUID", "Claim", "MarkState", "QueuedMark", "WorkQueue"]


class MarkState(StrEnum):
    """The queued mark's states, as ``lua/queued_mark.lua`` spells them."""

    PENDING = "p"  # a publish is on its way
    QUEUED = "q"  # the broker took the message
    REPORTED = "r"  # reported while a run holds the practice


@dataclass(frozen=True)
class QueuedMark:
    """The Python mirror of ``lua/queued_mark.lua``: a ``halo:dirty:{id}`` value, parsed. The Lua
    writes and reads the marks; Python reads them (tests, an operator's look) and must read them the
    same way (``tests/integration/test_queued_mark.py`` runs both over the same values)."""

    guid: str
    at_ms: int = 0
    state: MarkState | None = None  # None: an older mark, 'GUID|ms' or a bare GUID
    nonce: str | None = None

    @classmethod
    def parse(cls, value: str | bytes) -> QueuedMark:
        text = value.decode() if isinstance(value, bytes) else value
        guid, sep, rest = text.partition("|")
        if not sep:
            return cls(guid)
        raw_at, sep, tail = rest.partition("|")
        at = _int_or_zero(raw_at)
        if not sep:
            return cls(guid, at)
        state, sep, nonce = tail.partition("|")
        return cls(guid, at, MarkState(state), nonce if sep else None)

    def encode(self) -> str:
        if self.state is None:
            return f"{self.guid}|{self.at_ms}"
        return f"{self.guid}|{self.at_ms}|{self.state}|{self.nonce or ''}"


def _int_or_zero(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


FOLLOW_UP = "again"  # the nonce of the one more run ``done`` asks for (one claim at a time, so one)


def new_nonce() -> str:
    """Names one publish, so its confirm or forget touches its own mark and no later one."""
    return uuid.uuid4().hex[:16]


class WorkQueue:
    def __init__(self, redis: CoordinationClient, *, pending_seconds: int = 15, queued_seconds: int = 3600,
                 lock_seconds: int = 330) -> None:
        self.redis = redis
        self.pending_seconds = pending_seconds
        self.queued_seconds = queued_seconds
        self.lock_seconds = lock_seconds
        self._add = scripts.registered(redis, "queue_add")
        self._start = scripts.registered(redis, "queue_start")
        self._done = scripts.registered(redis, "queue_done")
        self._confirm = scripts.registered(redis, "queue_confirm")
        self._forget = scripts.registered(redis, "queue_forget")
        self._time = scripts.registered(redis, "now_ms")
        self._renew = scripts.registered(redis, "queue_renew")

    def add(self, practice_id: int, guid: str = ANY_GUID) -> str | None:
        """Mark the practice for a run. A nonce means: publish a task now (nobody else will), then
        ``confirm`` it, or ``forget`` it if the publish failed; None: a task is on its way already."""
        keys_ = [keys.dirty(practice_id), keys.processing(practice_id)]
        nonce = new_nonce()
        return nonce if self._add(keys=keys_, args=[guid, self.pending_seconds, nonce]) else None

    def confirm(self, practice_id: int, nonce: str) -> bool:
        """The broker took the message behind the pending mark ``nonce``: keep the mark until a claim."""
        return bool(self._confirm(keys=[keys.dirty(practice_id)], args=[nonce, self.queued_seconds]))

    def start(self, practice_id: int, token: str | None = None) -> Claim:
        """Claim the practice. ``token`` names the run; a broker message delivered again after its
        worker died passes the same token (its task id) and takes the dead delivery's lock over
        instead of waiting for it to expire."""
        token = token or uuid.uuid4().hex
        keys_ = [keys.dirty(practice_id), keys.processing(practice_id)]
        return self.claim_from(practice_id, token, int(self._start(keys=keys_, args=[token, self.lock_seconds])))

    @staticmethod
    def claim_from(practice_id: int, token: str, answer: int) -> Claim:
        """The claim ``lua/queue_start.lua`` answered (alone, or folded into a run's first round trip)."""
        if answer in (1, 2):
            return Claim(practice_id, token, True, taken_over=answer == 2)
        return Claim(practice_id, token, False, retry_in_ms=max(-answer, 1000))

    def renew(self, claim: Claim) -> bool:
        """The run holding ``claim`` is alive: its lock (and a report marked while it runs) lives another
        ``lock_seconds``. False: the claim is not this run's any more."""
        keys_ = [keys.dirty(claim.practice_id), keys.processing(claim.practice_id)]
        return bool(self._renew(keys=keys_, args=[claim.token, self.lock_seconds, self.pending_seconds]))

    def queued_marks(self, *, broker_queue: str, unacked: str = "unacked") -> dict[int, str] | None:
        """The confirmed queued marks (``q``: the broker took their message) by practice, with their nonce,
        when the broker holds no message at all for a run: none in ``broker_queue`` (kombu's list) and none
        delivered to a worker (kombu's ``unacked`` hash, which holds countdown follow-ups too). None while
        it holds any: a mark may then be that message's. A ``q`` mark with no message anywhere was lost
        after the broker took it (a purge, a broker that lost it)."""
        if self.redis.llen(broker_queue) or self.redis.hlen(unacked):
            return None
        found: dict[int, str] = {}
        for name in self.redis.scan_iter(match=keys.dirty("*"), count=500):
            value = self.redis.get(name)
            if value is None:
                continue
            try:
                mark = QueuedMark.parse(value)
            except ValueError:  # a state this code does not know: not ours to drop
                continue
            if mark.state is MarkState.QUEUED and mark.nonce:
                text = name.decode() if isinstance(name, bytes) else name
                found[int(text.rsplit(":", 1)[1])] = mark.nonce
        return found

    def take_over(self, practice_id: int) -> str | None:
        """End the practice's claim whoever holds it (an operator's ``reconcile --now --take-over``, after
        a worker host died holding it); the token it had, or None when nobody held it. A run still alive
        under that token finds its release refused and its write guarded by the practice's version."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(keys.processing(practice_id))
        pipe.delete(keys.processing(practice_id))
        token, _ = pipe.execute()
        return token.decode() if isinstance(token, bytes) else token

    def now_ms(self) -> int:
        """The Redis server's clock, which every report is stamped with (hosts' clocks may differ)."""
        return int(self._time(keys=[], args=[]))

    def done(self, claim: Claim, current_guid: str, answered_ms: int = 0) -> bool:
        """Release the claim. True means: publish exactly one more run.

        ``answered_ms`` is when this run had Halo's answer and had marked the practice fresh
        (``now_ms``); reports stamped up to it are answered already. 0 re-runs for any pending
        report that names the GUID in use.
        True leaves a pending mark named ``FOLLOW_UP``: the caller publishes, then confirms or forgets it.
        """
        keys_ = [keys.dirty(claim.practice_id), keys.processing(claim.practice_id)]
        return bool(self._done(keys=keys_, args=[claim.token, current_guid, answered_ms, FOLLOW_UP,
                                                 self.pending_seconds]))

    def follow_up_delay(self, practice_id: int) -> float:
        """Seconds the one more run waits: until the answer of the run that asked for it stops being
        fresh (``halo:fresh:{id}``, the re-check delay), as a report arriving just after that run would
        be re-checked (``lua/report.lua``'s ``recheck``); 0 when nothing is fresh (the run had no answer)."""
        return max(int(self.redis.pttl(keys.fresh(practice_id))), 0) / 1000

    def confirm_follow_up(self, practice_id: int) -> bool:
        """The one more run ``done`` asked for was published."""
        return self.confirm(practice_id, FOLLOW_UP)

    def forget_follow_up(self, practice_id: int) -> None:
        """The one more run ``done`` asked for was not published: the next report may queue it."""
        self.forget(practice_id, FOLLOW_UP)

    def forget(self, practice_id: int, nonce: str | None = None) -> None:
        """Drop a queued mark whose publish failed, so the next report can try again at once. With a
        nonce, only that publish's mark (a later report's is left alone)."""
        if nonce is None:
            self.redis.delete(keys.dirty(practice_id))
        else:
            self._forget(keys=[keys.dirty(practice_id)], args=[nonce])

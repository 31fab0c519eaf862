"""The queued mark's states against a real Valkey: pending until the broker took the message,
confirmed until a claim, forgotten when a publish fails; no mark outlives its message."""

from __future__ import annotations

import pytest
import redis

from models import Trigger
from reconciler.adapters.coordination import keys, scripts
from reconciler.adapters.coordination.marks import index_practice
from reconciler.adapters.coordination.reporter import Reporter
from reconciler.adapters.coordination.workqueue import MarkState, QueuedMark, WorkQueue
from reconciler.usecases.queueing import publish_follow_up
from reconciler.usecases.sweep import enqueue_planned

pytestmark = pytest.mark.integration

OLD = "11111111-1111-4111-8111-111111111111"
PENDING, QUEUED, LOCK = 7, 900, 120


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def state(r, practice_id: int = 7) -> tuple[str | None, int]:
    value = r.get(keys.dirty(practice_id))
    return (QueuedMark.parse(value).state if value else None), r.ttl(keys.dirty(practice_id))


def test_a_report_marks_pending_while_it_publishes_then_confirmed(r):
    seen = []
    reporter = Reporter(redis=r, publish=lambda *task: seen.append(state(r)), pending_seconds=PENDING,
                        queued_seconds=QUEUED)
    index_practice(r, 7, OLD, [])
    assert reporter.report(OLD, None) == "publish"
    [(during, ttl_during)] = seen
    assert during == "p" and 0 < ttl_during <= PENDING
    after, ttl_after = state(r)
    assert after == "q" and PENDING < ttl_after <= QUEUED
    assert reporter.report(OLD, None) == "folded"  # the message is in the broker: one run answers both


def test_a_failed_publish_forgets_only_its_own_mark(r):
    queue = WorkQueue(r, pending_seconds=PENDING, queued_seconds=QUEUED)
    mine = queue.add(7)
    assert mine and state(r)[0] == "p"
    r.delete(keys.dirty(7))  # it expired; another publisher queued the practice since
    theirs = queue.add(7)
    queue.forget(7, mine)  # the first publisher's failure comes late
    assert state(r)[0] == "p"  # the later mark stands
    assert not queue.confirm(7, mine)  # nor can it confirm someone else's mark
    assert queue.confirm(7, theirs) and state(r)[0] == "q"


def test_a_confirm_after_the_claim_does_not_bring_the_mark_back(r):
    queue = WorkQueue(r, pending_seconds=PENDING, queued_seconds=QUEUED)
    nonce = queue.add(7)
    assert queue.start(7, token="task-1").granted  # a fast worker claimed before the confirm
    assert not queue.confirm(7, nonce)
    assert not r.exists(keys.dirty(7))


def test_a_report_while_running_lives_with_the_lock_and_its_follow_up_is_pending(r):
    reporter = Reporter(redis=r, publish=lambda *task: None, pending_seconds=PENDING, queued_seconds=QUEUED)
    queue = WorkQueue(r, pending_seconds=PENDING, queued_seconds=QUEUED, lock_seconds=LOCK)
    index_practice(r, 7, OLD, [])
    claim = queue.start(7, token="task-1")
    assert reporter.report(OLD, None) == "folded"
    running, ttl = state(r)
    assert running == "r" and LOCK - 5 < ttl <= LOCK + PENDING  # no publisher: bound by the run's lock
    assert queue.done(claim, current_guid=OLD) is True
    follow_up, ttl = state(r)
    assert follow_up == "p" and 0 < ttl <= PENDING
    with pytest.raises(ConnectionError):
        publish_follow_up(queue, 7, lambda countdown: (_ for _ in ()).throw(ConnectionError("broker down")))
    assert not r.exists(keys.dirty(7))  # the follow-up that was never sent swallows nothing
    assert reporter.report(OLD, None) == "publish"


def test_a_published_follow_up_is_confirmed(r):
    queue = WorkQueue(r, pending_seconds=PENDING, queued_seconds=QUEUED)
    claim = queue.start(7, token="task-1")
    queue.add(7, OLD)  # reported while it ran
    assert queue.done(claim, current_guid=OLD) is True
    sent = []
    publish_follow_up(queue, 7, lambda countdown: sent.append((7, countdown)))
    assert sent == [(7, None)] and state(r)[0] == "q"  # nothing fresh (no answer noted): at once


def test_the_sweep_confirms_what_it_published_and_forgets_what_failed(r):
    queue = WorkQueue(r, pending_seconds=PENDING, queued_seconds=QUEUED)
    published = []

    def publish(practice_id: int, trigger: Trigger) -> None:
        if practice_id == 2:
            raise ConnectionError("broker down")
        published.append(practice_id)

    with pytest.raises(ConnectionError):
        enqueue_planned(iter([(1, Trigger.SWEEP), (2, Trigger.RETRY), (3, Trigger.SWEEP)]), queue=queue,
                        publish=publish)
    assert published == [1] and state(r, 1)[0] == "q"
    assert not r.exists(keys.dirty(2)) and not r.exists(keys.dirty(3))
    assert enqueue_planned(iter([(2, Trigger.RETRY), (3, Trigger.SWEEP)]), queue=queue,
                           publish=lambda pid, trigger: published.append(pid)) == 2
    assert published == [1, 2, 3]


# The mark's encoding lives in lua/queued_mark.lua; QueuedMark mirrors it. Both read the same values
# the same way, and what the Lua writes is what Python reads.
_LUA_PARSE = scripts.expand("""--#include queued_mark
local guid, at, state, nonce = queued_mark().parse(ARGV[1])
return {guid, at, state or false, nonce or false}
""")


@pytest.mark.parametrize("value", [
    f"{OLD}|1733350000123|p|abcdef0123456789", f"*|1733350000123|q|again", f"{OLD}|1733350000123|r|",
    f"{OLD}|1733350000123", OLD,
])
def test_the_python_mirror_reads_a_mark_as_the_lua_does(r, value):
    guid, at, state, nonce = r.eval(_LUA_PARSE, 0, value)
    mark = QueuedMark.parse(value)
    assert (mark.guid, mark.at_ms, mark.state, mark.nonce) == (
        guid.decode(), at, MarkState(state.decode()) if state else None, nonce.decode() if nonce is not None else None)
    assert QueuedMark.parse(mark.encode()) == mark


def test_what_the_lua_writes_the_python_mirror_reads(r):
    queue = WorkQueue(r, pending_seconds=PENDING, queued_seconds=QUEUED, lock_seconds=LOCK)
    nonce = queue.add(7, OLD)
    pending = QueuedMark.parse(r.get(keys.dirty(7)))
    assert (pending.guid, pending.state, pending.nonce) == (OLD, MarkState.PENDING, nonce)
    assert pending.at_ms > 0
    assert queue.confirm(7, nonce)
    assert QueuedMark.parse(r.get(keys.dirty(7))) == QueuedMark(OLD, pending.at_ms, MarkState.QUEUED, nonce)
    claim = queue.start(7)
    assert queue.add(7, OLD) is None  # reported while the run holds the practice
    reported = QueuedMark.parse(r.get(keys.dirty(7)))
    assert (reported.guid, reported.state, reported.nonce) == (OLD, MarkState.REPORTED, "")
    assert queue.done(claim, OLD, answered_ms=0)  # it names the GUID in use: one more run, pending
    assert QueuedMark.parse(r.get(keys.dirty(7))) == QueuedMark(OLD, reported.at_ms, MarkState.PENDING, "again")

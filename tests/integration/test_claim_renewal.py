"""The claim's lock is short and its live run renews it (issue 24, Medium: a whole worker host killed left
the practice deaf for about 30 minutes). Real Valkey: the renewal is a Lua script."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from structlog.testing import capture_logs

from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.marks import index_practice
from reconciler.adapters.coordination.reporter import Reporter
from reconciler.adapters.coordination.workqueue import WorkQueue
from reconciler.core.work import Claim
from reconciler.usecases.claims import STOPPED, keep_alive
from tests.utils.waiting import wait_until
from worker import wiring
from worker.config import get_settings

OLD = "11111111-1111-4111-8111-111111111111"
PENDING, QUEUED, LOCK = 7, 900, 60


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_the_lock_is_a_minute_not_past_the_hard_time_limit():
    assert wiring.work_queue().lock_seconds == get_settings().claim_lock_seconds == LOCK


def test_a_renewal_extends_the_lock_and_a_report_marked_while_it_runs(r):
    reporter = Reporter(redis=r, publish=lambda *task: None, pending_seconds=PENDING, queued_seconds=QUEUED)
    queue = WorkQueue(r, pending_seconds=PENDING, queued_seconds=QUEUED, lock_seconds=LOCK)
    index_practice(r, 7, OLD, [])
    claim = queue.start(7, token="task-1")
    assert reporter.report(OLD, None) == "folded"  # marked 'r': lives with the lock
    r.pexpire(keys.processing(7), 5_000)  # as if most of the minute had passed
    r.pexpire(keys.dirty(7), 5_000)
    assert queue.renew(claim)
    assert LOCK - 2 < r.ttl(keys.processing(7)) <= LOCK
    assert LOCK < r.ttl(keys.dirty(7)) <= LOCK + PENDING  # the report still waits for the run's done
    assert queue.done(claim, current_guid=OLD) is True  # and asks for one more run


def test_a_taken_over_claim_is_not_renewed_and_the_run_stops_renewing(r):
    queue = WorkQueue(r, pending_seconds=PENDING, queued_seconds=QUEUED, lock_seconds=LOCK)
    claim = queue.start(7, token="dead-host")
    assert queue.take_over(7) == "dead-host" and not r.exists(keys.processing(7))
    assert not queue.renew(claim)
    assert queue.take_over(7) is None  # nobody held it


def test_a_live_run_keeps_renewing_until_it_ends():
    calls: list[Claim] = []
    renewed = threading.Event()

    def renew(claim: Claim) -> bool:
        calls.append(claim)
        if len(calls) >= 3:
            renewed.set()
        return True

    claim = Claim(7, "task-1", True)
    renewal = keep_alive(claim, renew, every=0.01)
    wait_until(renewed.is_set, timeout=10, interval=0.01, what="three renewals")
    renewal.stop()
    after = len(calls)
    assert after >= 3
    assert keep_alive(Claim(7, "t", False, retry_in_ms=1000), renew, every=0.01) is STOPPED  # not granted: not renewed
    time.sleep(0.05)
    assert len(calls) == after  # and none after the stop


def test_queued_marks_are_read_only_when_the_broker_holds_no_run_message(r):
    queue = WorkQueue(r, pending_seconds=PENDING, queued_seconds=QUEUED, lock_seconds=LOCK)
    nonce = queue.add(7)
    assert queue.queued_marks(broker_queue="reconcile") == {}  # pending, not confirmed: it expires by itself
    assert queue.confirm(7, nonce)
    assert queue.queued_marks(broker_queue="reconcile") == {7: nonce}
    r.rpush("reconcile", "a message")
    assert queue.queued_marks(broker_queue="reconcile") is None
    r.delete("reconcile")
    r.hset("unacked", "tag", "a message a worker holds")
    assert queue.queued_marks(broker_queue="reconcile") is None


def test_one_thread_renews_every_live_claim_of_the_process():
    renewed: dict[int, int] = {}
    renewers: set[int] = set()  # the threads that renewed (another test's own renewer may be alive too)
    lock = threading.Lock()

    def renew(claim: Claim) -> bool:
        with lock:
            renewed[claim.practice_id] = renewed.get(claim.practice_id, 0) + 1
            renewers.add(threading.get_ident())
        return True

    renewals = [keep_alive(Claim(n, f"task-{n}", True), renew, every=0.01) for n in range(20)]
    try:
        wait_until(lambda: len(renewed) == 20 and min(renewed.values()) >= 2, timeout=10, interval=0.01,
                   what="every claim renewed twice")
        assert len(renewers) == 1 and threading.get_ident() not in renewers
    finally:
        for renewal in renewals:
            renewal.stop()
    before = dict(renewed)
    time.sleep(0.05)  # a stopped claim is never renewed again (stop waited for one in flight)
    assert renewed == before


def test_a_claim_stopped_before_its_release_never_reads_as_lost():
    released = threading.Event()
    in_flight, go_on = threading.Event(), threading.Event()

    def renew(claim: Claim) -> bool:
        if released.is_set():
            return False  # what the store answers once the finish released the claim
        in_flight.set()
        go_on.wait(5)
        return True

    with capture_logs() as logs:
        renewal = keep_alive(Claim(9, "task-9", True), renew, every=0.01)
        assert in_flight.wait(5)  # a renewal in flight when the run finishes
        stopping = threading.Thread(target=renewal.stop)
        stopping.start()
        go_on.set()
        stopping.join(5)
        released.set()  # the run's finish releases the claim after the renewal stopped
        time.sleep(0.05)
    assert not stopping.is_alive()
    assert [line for line in logs if line["event"] == "claim_lost"] == []


def test_a_taken_over_claim_reads_as_lost_once_and_is_not_renewed_again():
    calls: list[Claim] = []

    def renew(claim: Claim) -> bool:
        calls.append(claim)
        return False

    with capture_logs() as logs:
        renewal = keep_alive(Claim(5, "task-5", True), renew, every=0.01)
        wait_until(lambda: calls, timeout=10, interval=0.01, what="one renewal")
        time.sleep(0.05)
        renewal.stop()
    assert len(calls) == 1
    assert [line["practice_id"] for line in logs if line["event"] == "claim_lost"] == [5]

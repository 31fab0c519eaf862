"""The report path and the work queue against a real Valkey (their Lua differs in fakeredis)."""

from __future__ import annotations

import time

import pytest
import redis

from reconciler.adapters.coordination.marks import index_practice, note_verified
from reconciler.adapters.coordination.reporter import PublishFailed, Reporter
from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.workqueue import WorkQueue
from tests.utils.waiting import wait_until

pytestmark = pytest.mark.integration

OLD = "11111111-1111-4111-8111-111111111111"
NEW = "22222222-2222-4222-8222-222222222222"
UNKNOWN = "99999999-9999-4999-8999-999999999999"


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def published():
    return []


@pytest.fixture
def reporter(r, published):
    return Reporter(redis=r, publish=lambda name, args, queue, **options: published.append((name, args, queue)),
                    threshold=3)


def test_a_storm_for_one_practice_publishes_one_task(r, reporter, published):
    index_practice(r, 7, OLD, [])
    outcomes = [reporter.report(OLD, "Forbidden") for _ in range(500)]
    assert outcomes.count("publish") == 1 and outcomes.count("folded") == 499
    assert published == [("halo.reconcile_practice", [7, "forbidden"], "reconcile")]


def test_a_report_while_running_gives_exactly_one_more_run(r, reporter, published):
    index_practice(r, 7, OLD, [])
    queue = WorkQueue(r)
    reporter.report(OLD, None)
    claim = queue.start(7)
    assert claim.granted
    for _ in range(50):
        reporter.report(OLD, None)  # arrive while it runs
    assert len(published) == 1
    assert queue.done(claim, current_guid=OLD) is True  # still the GUID in use: one more run
    again = queue.start(7)
    assert again.granted and queue.done(again, current_guid=OLD) is False


def test_a_report_while_running_is_dropped_if_the_run_replaced_that_guid(r, reporter):
    index_practice(r, 7, OLD, [])
    queue = WorkQueue(r)
    reporter.report(OLD, None)
    claim = queue.start(7)
    reporter.report(OLD, None)
    assert queue.done(claim, current_guid=NEW) is False
    assert not r.exists(keys.dirty(7))


def test_reports_naming_a_replaced_guid_cost_nothing(r, reporter, published):
    index_practice(r, 7, NEW, [OLD])
    assert {reporter.report(OLD, None) for _ in range(20)} == {"stale"}
    assert published == [] and int(r.hget(keys.report_outcomes(), "stale")) == 20


def test_unknown_guid_is_looked_up_once_then_counted(r, reporter, published):
    assert reporter.report(UNKNOWN, None) == "lookup"
    assert reporter.report(UNKNOWN, None) == "folded_lookup"  # the lookup is on its way
    assert int(r.hget(keys.report_outcomes(), "folded")) == 1  # counted as what it is: folded
    assert published == [("halo.lookup_forbidden", [UNKNOWN, None], "events")]
    r.set(keys.unknown_guid(UNKNOWN), "1")  # what the lookup task records
    assert reporter.report(UNKNOWN, None) == "unknown"
    assert int(r.hget(keys.report_outcomes(), "unknown")) == 1


def test_after_an_unchanged_verification_reports_queue_one_recheck_and_the_threshold_notes_persistence(r, published):
    sent = []
    reporter = Reporter(redis=r, publish=lambda name, args, queue, **options: sent.append((name, args, queue, options)),
                        threshold=3)
    index_practice(r, 7, OLD, [])
    note_verified(r, 7, confirmed=True, min_seconds=60, max_seconds=900)
    outcomes = [reporter.report(OLD, None) for _ in range(5)]
    # No deaf window: the first report queues a re-check, delayed to when the confirmation's 60 s end.
    assert outcomes == ["recheck", "counted", "persists", "counted", "counted"]
    [(name, args, queue, options), persists] = sent
    assert (name, args, queue) == ("halo.reconcile_practice", [7, "forbidden"], "reconcile")
    assert 55 < options["countdown"] <= 60
    assert persists[:3] == ("halo.note_forbidden_persists", [7], "events")


def test_after_a_held_change_reports_queue_one_recheck_then_count(r, reporter, published):
    index_practice(r, 7, OLD, [])
    note_verified(r, 7, confirmed=False, min_seconds=60, max_seconds=900)
    outcomes = [reporter.report(OLD, None) for _ in range(10)]
    assert outcomes == ["recheck"] + ["counted"] * 9
    assert published == [("halo.reconcile_practice", [7, "forbidden"], "reconcile")]


def test_the_recheck_delay_doubles_with_each_confirmation_and_restarts_after_a_switch(r):
    def delay_ms() -> int:
        return r.pttl(keys.fresh(7))

    index_practice(r, 7, OLD, [])
    seen = []
    for _ in range(8):
        note_verified(r, 7, confirmed=True, min_seconds=10, max_seconds=900)
        seen.append(round(delay_ms() / 1000))
    assert seen == [10, 20, 40, 80, 160, 320, 640, 900]
    note_verified(r, 7, confirmed=True, min_seconds=10, max_seconds=900, restart=True)  # a switch
    assert round(delay_ms() / 1000) == 10
    r.delete(keys.confirmations(7))  # what an hour without reports does (the hash's lifetime)
    note_verified(r, 7, confirmed=True, min_seconds=10, max_seconds=900)
    assert round(delay_ms() / 1000) == 10


def test_a_report_after_the_recheck_delay_runs_at_once_and_one_before_it_folds(r, reporter, published):
    index_practice(r, 7, OLD, [])
    note_verified(r, 7, confirmed=True, min_seconds=60, max_seconds=900)
    assert reporter.report(OLD, None) == "recheck"
    r.delete(keys.fresh(7))  # the delay is over, the re-check not started yet
    assert reporter.report(OLD, None) == "folded"  # it rides the queued re-check: nothing is doubled
    r.delete(keys.recheck(7))  # the re-check ran (note_answered clears its mark)
    assert reporter.report(OLD, None) == "publish"


def test_every_report_counts_in_the_ledger(r, reporter):
    from reconciler.adapters.coordination.ledger import ForbiddenLedger

    index_practice(r, 7, OLD, [])
    for _ in range(40):
        reporter.report(OLD, None)
    assert ForbiddenLedger(r, window_seconds=3600).count(OLD) == 40


def test_integrator_wide_403s_fold_into_one_note(r, reporter, published):
    index_practice(r, 7, OLD, [])
    for _ in range(30):
        reporter.report(OLD, "Caller Ip Not Allowed")
    assert published == [("halo.note_integrator_forbidden", ["ip_not_allowed", "Caller Ip Not Allowed"], "events")]


def test_a_failed_publish_leaves_nothing_blocking(r):
    def broken(name, args, queue):
        raise ConnectionError("broker down")

    index_practice(r, 7, OLD, [])
    reporter = Reporter(redis=r, publish=broken)
    with pytest.raises(PublishFailed):
        reporter.report(OLD, None)
    assert not r.exists(keys.dirty(7))


def test_a_crashed_runs_lock_expires(r):
    queue = WorkQueue(r, lock_seconds=1)
    assert queue.start(7).granted
    blocked = queue.start(7)
    assert not blocked.granted and 0 < blocked.retry_in_ms <= 1000
    wait_until(lambda: not r.exists(keys.processing(7)), timeout=5, interval=0.05, what="the run lock expiring")
    assert queue.start(7).granted


def test_a_redelivered_message_takes_its_dead_deliverys_lock_over(r):
    queue = WorkQueue(r)
    assert queue.start(7, token="task-1").granted
    assert not queue.start(7, token="task-2").granted  # another message waits
    again = queue.start(7, token="task-1")  # the same message, delivered again: its worker died
    assert again.granted and again.taken_over
    assert queue.done(again, current_guid=OLD) is False
    assert queue.start(7, token="task-2").granted


def test_rate_limiter_holds_the_rate_across_clients(redis_url):
    from reconciler.adapters.coordination.ratelimit import RateLimiter

    clients = [redis.Redis.from_url(redis_url) for _ in range(3)]
    limiters = [RateLimiter(c, name="test", rate_per_second=50) for c in clients]
    stamps, refused = [], 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for limiter in limiters:
            if limiter.acquire(timeout=0.5):
                stamps.append(time.monotonic())
            else:
                refused += 1
    start = stamps[0]
    per_second: dict[int, int] = {}
    for stamp in stamps:
        per_second[int(stamp - start)] = per_second.get(int(stamp - start), 0) + 1
    full_seconds = [n for second, n in per_second.items() if second < int(stamps[-1] - start)]
    assert full_seconds and max(full_seconds) <= 50 * 1.05 + 1
    # Nobody starves: with slots 20 ms apart, each of the three clients always got one within half a
    # second. (How close to the rate the limiter runs is a throughput, measured by the sweep benchmark
    # beside its limit, not asserted here: a loaded machine's late wake-ups would make it a timed test.)
    assert refused == 0


def test_a_report_made_before_halo_answered_is_answered_by_that_run(r, reporter):
    index_practice(r, 7, OLD, [])
    queue = WorkQueue(r)
    reporter.report(OLD, None)
    claim = queue.start(7)
    reporter.report(OLD, None)  # while the run is still asking Halo
    reported_ms = int(r.get(keys.dirty(7)).split(b"|")[1])
    wait_until(lambda: queue.now_ms() > reported_ms, timeout=1, interval=0.001, what="Redis's clock passing the report")
    assert queue.done(claim, current_guid=OLD, answered_ms=queue.now_ms()) is False


def test_a_report_made_after_halo_answered_gets_one_more_run(r, reporter):
    index_practice(r, 7, OLD, [])
    queue = WorkQueue(r)
    reporter.report(OLD, None)
    claim = queue.start(7)
    answered = queue.now_ms()
    wait_until(lambda: queue.now_ms() > answered, timeout=1, interval=0.001, what="Redis's clock passing the answer")
    reporter.report(OLD, None)
    assert queue.done(claim, current_guid=OLD, answered_ms=answered) is True


def test_a_report_stamped_the_instant_halo_answered_is_answered_by_that_run(r):
    # The run reads the clock after marking the practice fresh: a report with that very stamp was
    # made before the mark, so it folded into this run and needs no other (the storm's stray calls).
    queue = WorkQueue(r)
    claim = queue.start(7)
    answered = queue.now_ms()
    r.set(keys.dirty(7), f"{OLD}|{answered}")
    assert queue.done(claim, current_guid=OLD, answered_ms=answered) is False


def test_a_report_after_the_answer_of_a_running_reconciliation_is_run_again_not_dropped(r, reporter, published):
    from reconciler.adapters.coordination.marks import note_answered

    index_practice(r, 7, OLD, [])
    queue = WorkQueue(r)
    claim = queue.start(7)
    note_answered(r, 7)  # Halo answered this run
    answered_ms = queue.now_ms()
    time.sleep(0.005)  # the report's stamp is strictly later than the answer (ms clock)
    assert reporter.report(OLD, None) == "folded"  # into the running run: its done() decides
    assert queue.done(claim, current_guid=OLD, answered_ms=answered_ms) is True  # still in use: one more run
    assert published == []  # the caller of done() publishes it (queueing.publish_follow_up)


def test_a_report_after_the_answer_naming_the_guid_the_run_replaced_costs_no_call(r, reporter, published):
    from reconciler.adapters.coordination.marks import note_answered

    index_practice(r, 7, OLD, [])
    queue = WorkQueue(r)
    claim = queue.start(7)
    note_answered(r, 7)
    answered_ms = queue.now_ms()
    time.sleep(0.005)
    assert reporter.report(OLD, None) == "folded"  # the index still says current: the switch is not written yet
    assert queue.done(claim, current_guid=NEW, answered_ms=answered_ms) is False  # the run switched: explained
    assert published == []


def test_a_server_that_forgot_the_script_still_takes_every_report(r, reporter, published):
    """EVALSHA by the cached sha; after a restart or SCRIPT FLUSH the script is loaded again, once."""
    index_practice(r, 7, OLD, [])
    assert reporter.report(OLD, "Forbidden") == "publish"
    r.script_flush()
    assert reporter.report(OLD, "Forbidden") == "folded"  # reloaded on the way, the same answer
    assert r.script_exists(reporter._sha) == [True]
    assert reporter.report(OLD, "Forbidden") == "folded"
    assert published == [("halo.reconcile_practice", [7, "forbidden"], "reconcile")]
    assert int(r.hget(keys.report_outcomes(), "folded")) == 2

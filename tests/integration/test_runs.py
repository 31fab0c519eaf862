"""A reconciliation's coordination folded into three Lua round trips (``coordination/runs.py``), against
a real Valkey (fakeredis's Lua differs): the same keys, answers and marks as the separate ports' calls
(``PortRuns`` over the real ``WorkQueue`` and ``RedisCoordination``), and the round trips a real run
makes through the real wiring."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import redis
from redis.connection import AbstractConnection

from models import Action, PmsType, Trigger, Verdict
from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.breaker import RedisBreaker
from reconciler.adapters.coordination.marks import RedisCoordination, index_practice, note_verified, recheck_delay
from reconciler.adapters.coordination.ratelimit import RateLimiter
from reconciler.adapters.coordination.reporter import Reporter
from reconciler.adapters.coordination.runs import RedisRuns
from reconciler.adapters.coordination.workqueue import WorkQueue
from reconciler.core.errors import CoordinationUnavailable
from reconciler.core.work import RunFinished
from reconciler.usecases.reconcile import reconcile
from worker import admin, wiring
from worker.config import get_settings
from tests.utils.runs import PortRuns

pytestmark = pytest.mark.integration

OLD = "11111111-1111-4111-8111-111111111111"
NEW = "22222222-2222-4222-8222-222222222222"
PID = 7


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def parts(r):  # noqa: ANN001, ANN201
    queue = WorkQueue(r)
    coordination = RedisCoordination(r, window_seconds=3600, recheck_min_seconds=10, recheck_max_seconds=40)
    breaker = RedisBreaker(r, key_fingerprint="abc123", base_seconds=60, cap_seconds=3600)
    return queue, coordination, breaker


def folded(r):  # noqa: ANN001, ANN201
    queue, coordination, breaker = parts(r)
    return RedisRuns(queue, coordination, breaker), breaker


def separate(r):  # noqa: ANN001, ANN201
    queue, coordination, breaker = parts(r)
    return PortRuns(queue, coordination), breaker


def snapshot(r) -> dict:  # noqa: ANN001
    """Every key a run touches, with whether it expires; times (the confirmations' start) only as present."""
    found = {}
    for name in sorted(k.decode() for k in r.keys("halo:*")):
        kind = r.type(name).decode()
        if kind == "hash":
            value = {k.decode(): v.decode() for k, v in r.hgetall(name).items()}
            if "since_ms" in value:
                value["since_ms"] = "set"
        else:
            value = r.get(name).decode()
            if name.startswith(keys.dirty("")):
                guid, _ms, *rest = value.split("|")
                value = "|".join([guid, "ms", *rest])
        found[name] = (value, r.pttl(name) > 0)
    return found


def a_run_with_a_report_during_it(r, make) -> tuple:  # noqa: ANN001
    """A confirmed practice is reported (re-check queued, 403s counted), claimed, answered, reported
    again after the answer, and finished with Halo confirming the GUID."""
    runs, _ = make(r)
    reporter = Reporter(redis=r, publish=lambda *args, **options: None, threshold=100)
    index_practice(r, PID, OLD, [])
    note_verified(r, PID, confirmed=True, min_seconds=10, max_seconds=40)
    before = [reporter.report(OLD, None) for _ in range(3)]
    claim, breakers, since = runs.begin(PID, token="task-1")
    assert claim is not None and claim.granted and since is not None
    ms, forbidden = runs.answered(PID, noted=True, guid=OLD, since=since)
    rechecks_after_answer = r.exists(keys.recheck(PID))
    during = reporter.report(OLD, None)
    r.set(keys.dirty(PID), f"{OLD}|{ms + 1}|r|")  # a report after the answer, still naming the GUID in use
    again, breaker_open = runs.finish(PID, claim, current_guid=OLD, answered_ms=ms, noted=True, confirmed=True,
                                      breaker_closing=True)
    closed = make(r)[1].close() if breaker_open else ([], [])  # as the use case does when one may be open
    return (before, breakers or [], forbidden, rechecks_after_answer, during, again, closed), snapshot(r)


def a_switch(r, make) -> tuple:  # noqa: ANN001
    runs, _ = make(r)
    index_practice(r, PID, OLD, [])
    note_verified(r, PID, confirmed=True, min_seconds=10, max_seconds=40)
    note_verified(r, PID, confirmed=True, min_seconds=10, max_seconds=40)
    r.set(keys.unknown_guid(NEW), "1")  # a report of the new GUID before it was ours
    claim, _, since = runs.begin(PID, token="task-2")
    ms, forbidden = runs.answered(PID, noted=True, guid=None, since=since)
    again, _ = runs.finish(PID, claim, current_guid=NEW, answered_ms=ms, noted=True, replaced_guid=OLD,
                           confirmed=True, past_guids=("33333333-3333-4333-8333-333333333333",))
    return (forbidden, again), snapshot(r)


def an_open_breaker(r, make) -> tuple:  # noqa: ANN001
    runs, breaker = make(r)
    tripped = breaker.trip(Verdict.UNAUTHORIZED, now=1000.0)
    claim, breakers, _ = runs.begin(PID, token="task-3")
    read = breakers if breakers is not None else breaker.states()
    ms, _ = runs.answered(PID, noted=False, guid=None, since=None)
    again, breaker_open = runs.finish(PID, claim, current_guid=OLD, answered_ms=ms, noted=False,
                                      breaker_closing=True)
    closed = breaker.close() if breaker_open else ([], [])
    return (read == [tripped], again, breaker_open, closed), snapshot(r)


def a_claim_held_by_another_run(r, make) -> tuple:  # noqa: ANN001
    runs, _ = make(r)
    WorkQueue(r).start(PID, token="other")
    claim, _, _ = runs.begin(PID, token="task-4")
    return (claim.granted, claim.retry_in_ms >= 1000), snapshot(r)


@pytest.mark.parametrize("scenario", [a_run_with_a_report_during_it, a_switch, an_open_breaker,
                                      a_claim_held_by_another_run], ids=lambda f: f.__name__)
def test_three_round_trips_do_what_the_separate_calls_do(r, scenario):
    expected = scenario(r, separate)
    r.flushall()
    assert scenario(r, folded) == expected


def test_what_the_folded_run_leaves(r):
    (before, breakers, forbidden, rechecks, during, again, closed), keys_left = a_run_with_a_report_during_it(
        r, folded)
    assert before == ["recheck", "counted", "counted"] and breakers == [] and forbidden == 3
    assert rechecks == 0  # the answer cleared the queued re-check
    assert again is True and closed == ([], [])  # the report after the answer asks for one more run
    assert keys_left[keys.confirmations(PID)] == ({"count": "2", "since_ms": "set"}, True)
    assert keys_left[keys.fresh(PID)] == ("confirmed", True)
    assert keys.processing(PID) not in keys_left  # released

    r.flushall()
    (forbidden, again), keys_left = a_switch(r, folded)
    assert forbidden == 0 and again is False
    index = keys_left[keys.guid_index()][0]
    assert index == {OLD: f"{PID}:stale", NEW: f"{PID}:current", "33333333-3333-4333-8333-333333333333": f"{PID}:stale"}
    assert keys_left[keys.confirmations(PID)][0]["count"] == "1"  # a switch starts the confirmations again
    assert keys.unknown_guid(NEW) not in keys_left

    r.flushall()
    (read, again, breaker_open, closed), keys_left = an_open_breaker(r, folded)
    assert read and again is False and breaker_open is True and closed == ([Verdict.UNAUTHORIZED], [])
    assert not any(name.startswith(keys.breaker("")) for name in keys_left)


def test_the_finish_announces_the_run_with_its_again(r):
    runs, _ = folded(r)
    listener = r.pubsub()
    listener.subscribe(keys.runs_finished())
    assert listener.get_message(timeout=2)["type"] == "subscribe"
    finished = RunFinished(practice_id=PID, guid=OLD, current_guid=NEW, action="switched", answered=True)
    for report_after_answer in (False, True):
        claim, _, _ = runs.begin(PID, token=f"task-{report_after_answer}")
        ms, _ = runs.answered(PID, noted=True, guid=None, since=None)
        if report_after_answer:  # a report of the GUID in use after the answer: one more run follows
            r.set(keys.dirty(PID), f"{NEW}|{ms + 1}|r|")
        again, _ = runs.finish(PID, claim, current_guid=NEW, answered_ms=ms, noted=True, replaced_guid=OLD,
                               confirmed=True, finished=finished)
        assert again is report_after_answer
        message = listener.get_message(timeout=2)
        assert RunFinished.parse(message["data"]) == replace(finished, again=report_after_answer)
    claim, _, _ = runs.begin(PID, token="task-raised")
    runs.finish(PID, claim, current_guid="", answered_ms=0, noted=False)  # a run that raised tells nobody
    assert not r.exists(keys.processing(PID))
    assert listener.get_message(timeout=0.5) is None
    listener.close()


def test_the_claim_takes_the_first_calls_token_for_this_thread_only_while_the_run_lives(r):
    limiter = RateLimiter(r, name="halo", rate_per_second=1)  # one token a second: a second one waits
    queue, coordination, breaker = parts(r)
    runs = RedisRuns(queue, coordination, breaker, limiter=limiter)
    claim, _, _ = runs.begin(PID, token="task-1")
    assert claim.granted and r.exists(limiter.key)  # the token was taken with the claim
    assert limiter.try_acquire() > 0  # so the bucket has none left for anyone else now ...
    assert limiter.acquire(timeout=0)  # ... and this thread's first call spends the one it holds
    assert not limiter.acquire(timeout=0)  # once
    other, _, _ = runs.begin(PID, token="task-2")
    assert not other.granted and not limiter.acquire(timeout=0)  # no claim, no token taken nor held
    runs.finish(PID, claim, current_guid=OLD, answered_ms=0, noted=False)

    r.delete(limiter.key)
    gated, _, _ = runs.begin(PID + 1, token="task-3")  # a run that then asks Halo nothing (its gate)
    runs.finish(PID + 1, gated, current_guid=OLD, answered_ms=0, noted=False)
    assert not limiter.acquire(timeout=0)  # its token was dropped at the finish, not carried to a later call

    r.delete(limiter.key)
    held = []
    claim, _, _ = runs.begin(PID + 2, token="task-4")
    thread = threading.Thread(target=lambda: held.append(limiter.acquire(timeout=0)))
    thread.start()
    thread.join()
    assert held == [False]  # the token is this thread's: another thread's call finds the bucket spent
    runs.finish(PID + 2, claim, current_guid=OLD, answered_ms=0, noted=False)


def test_the_re_check_delay_doubles_up_to_its_cap(r):
    for confirmations in range(1, 6):
        note_verified(r, PID, confirmed=True, min_seconds=10, max_seconds=40)
        delay_ms = recheck_delay(confirmations, min_seconds=10, max_seconds=40) * 1000
        earlier_ms = recheck_delay(confirmations - 1, min_seconds=10, max_seconds=40) * 1000 if confirmations > 1 else 0
        # Within the delay, and past the one before it: the count picked its own delay from the table.
        assert earlier_ms < r.pttl(keys.fresh(PID)) <= delay_ms or delay_ms == earlier_ms
    assert r.hget(keys.confirmations(PID), "count") == b"5"
    note_verified(r, PID, confirmed=None, min_seconds=10, max_seconds=40)
    assert not r.exists(keys.fresh(PID))  # no answer: nothing is fresh


@pytest.fixture
def round_trips(monkeypatch):
    sent: list[bytes] = []  # each write to the socket: the command and its first argument (a script's SHA)
    send = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):  # noqa: ANN001, ANN202
        sent.append(b" ".join(b"".join(command if isinstance(command, list) else [command]).split(b"\r\n")[2:5:2]))
        return send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


def test_a_real_run_makes_three_round_trips_and_a_switch_four(stack, round_trips, monkeypatch):
    sim, _ = stack
    # A rate limit the runs never wait for: a wait would be one more round trip for the next token.
    monkeypatch.setenv("HALO_RECONCILER_RATE_LIMIT_PER_SECOND", "10000")
    get_settings.cache_clear()
    wiring.close_halo_client()
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z1", practice_name="Clinic Z1")
    pid = admin.onboard(str(PmsType.ZEDMED), "Z1").id
    assert reconcile(pid, trigger=Trigger.SWEEP, deps=wiring.reconcile_deps()).verdict == Verdict.UNCHANGED
    round_trips.clear()  # the first run loaded the scripts
    # Unchanged after a confirmation: the 403 ledger is read too. The claim with the breakers, the
    # confirmations and Find sites' rate-limit token; the answer with the ledger; the note with the release.
    assert reconcile(pid, trigger=Trigger.SWEEP, deps=wiring.reconcile_deps()).verdict == Verdict.UNCHANGED
    assert len(round_trips) == 3, round_trips
    round_trips.clear()
    sim.change_guid(PmsType.ZEDMED, "Z1")
    result = reconcile(pid, trigger=Trigger.SWEEP, deps=wiring.reconcile_deps())
    assert result.action == Action.SWITCHED
    assert len(round_trips) == 4  # and the rate limiter's token for Get site status


class BlipAtFinish:
    """The folded runs, except that Redis drops the first finish that notes an answer."""

    def __init__(self, real) -> None:  # noqa: ANN001
        self.real, self.blipped = real, 0

    def __getattr__(self, name):  # noqa: ANN001, ANN204
        return getattr(self.real, name)

    def finish(self, practice_id, claim, **kwargs):  # noqa: ANN001, ANN201
        if kwargs.get("noted") and not self.blipped:
            self.blipped += 1
            raise CoordinationUnavailable("the coordination store did not answer (ConnectionError)")
        return self.real.finish(practice_id, claim, **kwargs)


def test_a_blip_at_finish_loses_the_note_not_the_claim(stack, r):
    sim, _ = stack
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z2", practice_name="Clinic Z2")
    onboarded = admin.onboard(str(PmsType.ZEDMED), "Z2")
    pid, old = onboarded.id, onboarded.halo_guid
    new = sim.change_guid(PmsType.ZEDMED, "Z2")
    blipping = BlipAtFinish(wiring.runs())
    deps = replace(wiring.reconcile_deps(), runs=blipping)
    result = reconcile(pid, trigger=Trigger.FORBIDDEN, deps=deps)
    assert result.action == Action.SWITCHED and blipping.blipped == 1
    assert not r.exists(keys.processing(pid))  # released by the second finish, without the note
    assert r.hget(keys.guid_index(), old) == f"{pid}:current".encode()  # the note was lost ...
    assert reconcile(pid, trigger=Trigger.SWEEP, deps=wiring.reconcile_deps()).verdict == Verdict.UNCHANGED
    assert r.hget(keys.guid_index(), old) == f"{pid}:stale".encode()  # ... and the next answer repairs it
    assert r.hget(keys.guid_index(), new) == f"{pid}:current".encode()

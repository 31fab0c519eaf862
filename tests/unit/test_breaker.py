"""The breaker's rules (pure) and its state over fakeredis (hashes, sets and SET NX: no Lua)."""

from __future__ import annotations

import fakeredis
import pytest

from models import Trigger
from reconciler.adapters.coordination.breaker import RedisBreaker, open_breakers
from reconciler.core import breaker as rules
from reconciler.core.breaker import Admission
from reconciler.core.vocabulary import Verdict
from reconciler.usecases.sweep import enqueue_planned


def test_probe_delay_doubles_from_base_to_cap():
    assert [rules.probe_delay(n, base=60, cap=3600) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920,
                                                                             3600, 3600]


def test_the_fingerprint_names_a_key_without_showing_it():
    key = "a-very-secret-subscription-key-0123"
    fp = rules.fingerprint(key)
    assert len(fp) == 12 and key not in fp and fp == rules.fingerprint(key) != rules.fingerprint(key + "x")
    assert rules.scope_for(Verdict.UNAUTHORIZED, fp) == f"key:{fp}"
    assert rules.scope_for(Verdict.QUOTA_EXCEEDED, fp) == rules.scope_for(Verdict.IP_NOT_ALLOWED, fp) == "integrator"


@pytest.fixture
def redis():
    return fakeredis.FakeRedis()


def make(redis, key="right-key") -> RedisBreaker:
    return RedisBreaker(redis, key_fingerprint=rules.fingerprint(key), base_seconds=60, cap_seconds=3600)


def test_one_probe_per_interval_and_a_failed_probe_doubles_the_wait(redis):
    breaker = make(redis)
    assert breaker.admit(now=0) is Admission.ADMIT
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=0)
    assert breaker.admit(now=59) is Admission.BLOCKED
    assert breaker.admit(now=60) is Admission.PROBE
    assert breaker.admit(now=61) is Admission.BLOCKED  # the probe is taken: one at a time
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=62)  # the probe was refused
    assert breaker.admit(now=62 + 119) is Admission.BLOCKED and breaker.admit(now=62 + 120) is Admission.PROBE


def test_a_refused_key_stops_only_the_processes_holding_it(redis):
    wrong, right = make(redis, "wrong-key"), make(redis, "right-key")
    wrong.trip(Verdict.UNAUTHORIZED, now=0)
    assert wrong.admit(now=1) is Admission.BLOCKED
    assert right.admit(now=1) is Admission.ADMIT and right.states() == []
    assert [s.scope for s in open_breakers(redis)] == [f"key:{rules.fingerprint('wrong-key')}"]
    assert wrong.states() != []


def test_a_fixed_keys_answer_closes_the_mistyped_keys_breaker_and_hands_back_its_kept_work(redis):
    # issue 24: a worker with a mistyped key kept 3 reports; the worker with the right key answered and
    # they stayed kept for ever (close() looked only at its own key's breaker), the ticket never resolved.
    wrong, right = make(redis, "wrong-key"), make(redis, "right-key")
    wrong.trip(Verdict.UNAUTHORIZED, now=0)
    for pid in (1, 2, 3):
        wrong.keep(pid)
    assert redis.exists(*right.closing_keys)  # a run's finish sees there is something to close
    assert right.close() == ([Verdict.UNAUTHORIZED], [1, 2, 3])
    assert wrong.states() == [] and open_breakers(redis) == [] and not redis.exists(*right.closing_keys)
    assert right.close() == ([], [])


def test_close_hands_back_each_kept_practice_once(redis):
    breaker = make(redis)
    breaker.trip(Verdict.IP_NOT_ALLOWED, now=0)
    for pid in (3, 1, 3, 2, 1):
        breaker.keep(pid)
    assert breaker.close() == ([Verdict.IP_NOT_ALLOWED], [1, 2, 3])
    assert breaker.close() == ([], []) and breaker.admit(now=1) is Admission.ADMIT


class Queue:
    def __init__(self) -> None:
        self.marked: set[int] = set()

    def add(self, practice_id: int) -> str | None:
        if practice_id in self.marked:
            return None
        self.marked.add(practice_id)
        return f"nonce-{practice_id}"

    def confirm(self, practice_id: int, nonce: str) -> bool:
        return practice_id in self.marked

    def forget(self, practice_id: int, nonce: str | None = None) -> None:
        self.marked.discard(practice_id)


def test_a_sweep_under_an_open_breaker_publishes_nothing_but_one_probe_and_keeps_the_rest(redis):
    breaker = make(redis)
    planned = [(pid, Trigger.SWEEP) for pid in range(1, 101)]
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=0)
    published: list[int] = []
    assert enqueue_planned(iter(planned), queue=Queue(), publish=lambda pid, t: published.append(pid),
                           breaker=breaker, now=30) == 0
    assert published == [] and redis.scard("halo:breaker-waiting") == 100
    assert enqueue_planned(iter(planned), queue=Queue(), publish=lambda pid, t: published.append(pid),
                           breaker=breaker, now=60) == 1
    assert published == [1]  # the probe; the others wait for it
    assert sorted(breaker.close()[1]) == list(range(1, 101))


def test_a_closing_breaker_clears_every_reason_of_its_scope():
    from reconciler.core.breaker import reasons_cleared
    from reconciler.core.vocabulary import TicketReason, Verdict

    # The demo's case: an IP refusal, then a quota one: the integrator's breaker says quota when it closes.
    assert set(reasons_cleared([Verdict.QUOTA_EXCEEDED])) == {TicketReason.IP_NOT_ALLOWED, TicketReason.QUOTA_EXCEEDED}
    assert reasons_cleared([Verdict.UNAUTHORIZED]) == (TicketReason.UNAUTHORIZED,)
    assert reasons_cleared([]) == ()


# --- the breaker probes by itself (reconciler.usecases.probing) --------------------------------------


from reconciler.core.errors import Busy  # noqa: E402
from reconciler.core.vocabulary import SkipReason  # noqa: E402
from reconciler.usecases import probing  # noqa: E402


def test_a_trip_schedules_one_probe_across_workers_with_the_probe_delay_as_its_countdown(redis):
    first, second = make(redis), make(redis)  # two workers, one store
    published: list[tuple[int, float]] = []
    publish = lambda pid, countdown: published.append((pid, countdown))  # noqa: E731
    first.trip(Verdict.QUOTA_EXCEEDED, now=1000)
    assert probing.after_run(first, publish, 7, verdict=Verdict.QUOTA_EXCEEDED, skipped=None, now=1000) == 60
    # Another worker's refused run and a kept report meanwhile: the probe is on its way already.
    assert probing.after_run(second, publish, 8, verdict=Verdict.QUOTA_EXCEEDED, skipped=None, now=1001) is None
    assert probing.after_run(second, publish, 9, verdict=None, skipped=SkipReason.BREAKER_OPEN, now=1002) is None
    assert published == [(7, 60)]
    assert sorted(int(p) for p in redis.smembers("halo:breaker-waiting")) == [7, 8]  # the refused runs wait too
    # A normal answer with no breaker open schedules nothing.
    assert probing.after_run(first, publish, 7, verdict=Verdict.UNCHANGED, skipped=None, now=1003) is None


def test_a_lost_probe_message_is_noticed_and_scheduled_again(redis):
    breaker = make(redis)
    published: list[float] = []
    breaker.trip(Verdict.IP_NOT_ALLOWED, now=1000)
    assert probing.schedule_probe(breaker, published.append, now=1000) == 60
    assert probing.schedule_probe(breaker, published.append, now=1030) is None  # on its way
    ttl = redis.ttl("halo:breaker-probe-scheduled")
    assert 60 < ttl <= 60 + 30  # it outlives its due time by the grace, no longer
    redis.delete("halo:breaker-probe-scheduled")  # what its expiry does when the message never ran
    assert probing.schedule_probe(breaker, published.append, now=1095) == 0  # due already: at once
    assert published == [60, 0]


def test_a_publish_that_fails_takes_its_mark_back(redis):
    breaker = make(redis)
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=0)

    def broken(countdown: float) -> None:
        raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        probing.schedule_probe(breaker, broken, now=0)
    assert not redis.exists("halo:breaker-probe-scheduled")


class Halo:
    """A probe's run against the real breaker: refused (trips) or answered (closes)."""

    def __init__(self, breaker: RedisBreaker, clock: list[float]) -> None:
        self.breaker, self.clock, self.refuse, self.ran = breaker, clock, True, []

    def run(self, pid: int) -> probing.ProbeRun:
        self.ran.append(pid)
        admission = self.breaker.admit(now=self.clock[0])
        if admission is Admission.BLOCKED:
            self.breaker.keep(pid)
            return probing.ProbeRun(verdict=None, skipped=SkipReason.BREAKER_OPEN)
        if self.refuse:
            self.breaker.trip(Verdict.QUOTA_EXCEEDED, now=self.clock[0])
            return probing.ProbeRun(verdict=Verdict.QUOTA_EXCEEDED, skipped=None)
        self.breaker.close()
        return probing.ProbeRun(verdict=Verdict.UNCHANGED, skipped=None)


def test_a_failed_probe_schedules_the_next_with_a_doubled_countdown_and_a_success_ends_it(redis):
    breaker = make(redis)
    clock = [0.0]
    halo = Halo(breaker, clock)
    published: list[float] = []
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=0)
    breaker.keep(5)
    assert probing.schedule_probe(breaker, published.append, now=0) == 60

    def probe(pid: int | None = 5) -> probing.ProbeOutcome:
        return probing.run_probe(pid, breaker=breaker, run=halo.run, publish=published.append, now=lambda: clock[0])

    clock[0] = 30  # early (a message delivered before its time): scheduled again for the due time
    assert probe() is probing.ProbeOutcome.EARLY and published[-1] == 30
    clock[0] = 60
    assert probe() is probing.ProbeOutcome.PROBED and halo.ran == [5]
    assert published[-1] == 120  # the failed probe: the next one, twice the wait
    clock[0] = 180
    halo.refuse = False  # Halo answers again
    assert probe() is probing.ProbeOutcome.PROBED and breaker.states() == []
    assert published == [60, 30, 120] and not redis.exists("halo:breaker-probe-scheduled")
    assert probe() is probing.ProbeOutcome.CLOSED and halo.ran == [5, 5]


def test_a_probe_meeting_a_running_practice_looks_again_soon(redis):
    breaker = make(redis)
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=0)
    published: list[float] = []

    def busy(pid: int) -> probing.ProbeRun:
        raise Busy("running", retry_in=4)

    assert probing.run_probe(3, breaker=breaker, run=busy, publish=published.append,
                             now=lambda: 60) is probing.ProbeOutcome.BUSY
    assert published == [4]
    redis.delete("halo:breaker-probe-scheduled")
    assert probing.run_probe(None, breaker=breaker, run=busy, publish=published.append,
                             now=lambda: 60) is probing.ProbeOutcome.IDLE


def test_a_probe_lock_whose_prober_died_is_taken_over_once_its_claim_expired(redis):
    breaker = make(redis)
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=0)
    assert breaker.admit(now=60, holder=5) is Admission.PROBE  # practice 5's run probes...
    redis.set("halo:processing:5", "task-5", ex=60)  # ...under its claim
    assert breaker.admit(now=61, holder=6) is Admission.BLOCKED  # alive: one probe at a time
    redis.delete("halo:processing:5")  # its worker host died: the claim expired, nothing released the lock
    assert breaker.admit(now=62, holder=6) is Admission.PROBE  # taken over, not blocked for the lock's 330 s
    assert redis.get("halo:breaker-probe:integrator") == b"6"
    assert breaker.admit(now=63) is Admission.BLOCKED  # a caller naming no practice never takes one over

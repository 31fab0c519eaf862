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
    assert right.close() == ([], [])  # the right key's success does not close another key's breaker
    assert wrong.states() != []


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

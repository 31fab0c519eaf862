"""Key and TTL logic of the 403 ledger (fakeredis: no Lua involved)."""

from __future__ import annotations

import fakeredis

from reconciler.adapters.coordination.ledger import ForbiddenLedger
from reconciler.adapters.coordination import keys

GUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_counts_within_the_window_and_forgets_after():
    r, clock = fakeredis.FakeRedis(), Clock()
    ledger = ForbiddenLedger(r, window_seconds=3600, clock=clock)
    ledger.record(GUID, 3)
    clock.now += 1800
    ledger.record(GUID)
    assert ledger.count(GUID) == 4
    clock.now += 1900
    assert ledger.count(GUID) == 1


def test_since_drops_buckets_before_the_last_verification():
    r, clock = fakeredis.FakeRedis(), Clock()
    ledger = ForbiddenLedger(r, window_seconds=3600, clock=clock)
    ledger.record(GUID, 5)
    clock.now += 600
    verified = clock.now
    clock.now += 120
    ledger.record(GUID, 2)
    assert ledger.count(GUID, since=verified) == 2


def test_buckets_expire_after_the_window():
    r, clock = fakeredis.FakeRedis(), Clock()
    ForbiddenLedger(r, window_seconds=3600, clock=clock).record(GUID)
    ttl = r.ttl(keys.forbidden_bucket(GUID, int(clock.now // 60)))
    assert 3600 < ttl <= 3660

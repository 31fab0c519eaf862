"""Key and TTL logic of the 403 ledger (fakeredis: no Lua involved).

The report script writes the buckets; here ``record`` writes them the way it does, with the key and
lifetime the ledger module hands the script, and the ledger reads them back.
"""

from __future__ import annotations

import fakeredis

from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.ledger import ForbiddenLedger, bucket, bucket_lifetime

GUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def record(ledger: ForbiddenLedger, guid: str, n: int = 1) -> None:
    key = keys.forbidden_bucket(guid, bucket(ledger.clock()))
    ledger.redis.incrby(key, n)
    ledger.redis.expire(key, bucket_lifetime(ledger.window_seconds))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_counts_within_the_window_and_forgets_after():
    r, clock = fakeredis.FakeRedis(), Clock()
    ledger = ForbiddenLedger(r, window_seconds=3600, clock=clock)
    record(ledger, GUID, 3)
    clock.now += 1800
    record(ledger, GUID)
    assert ledger.count(GUID) == 4
    clock.now += 1900
    assert ledger.count(GUID) == 1


def test_since_drops_buckets_before_the_last_verification():
    r, clock = fakeredis.FakeRedis(), Clock()
    ledger = ForbiddenLedger(r, window_seconds=3600, clock=clock)
    record(ledger, GUID, 5)
    clock.now += 600
    verified = clock.now
    clock.now += 120
    record(ledger, GUID, 2)
    assert ledger.count(GUID, since=verified) == 2


def test_buckets_expire_after_the_window():
    r, clock = fakeredis.FakeRedis(), Clock()
    record(ForbiddenLedger(r, window_seconds=3600, clock=clock), GUID)
    ttl = r.ttl(keys.forbidden_bucket(GUID, int(clock.now // 60)))
    assert 3600 < ttl <= 3660

import json

from reconciler.adapters.metrics import oldest_message_age


def message(headers: dict) -> bytes:
    return json.dumps({"body": "e30=", "headers": headers, "properties": {}}).encode()


def test_the_oldest_message_age_comes_from_the_stamp_we_put_on_every_task():
    assert oldest_message_age(message({"halo_sent_at": 100.0}), now=130.5, header="halo_sent_at") == 30.5
    assert oldest_message_age(message({"halo_sent_at": 200.0}), now=130.0, header="halo_sent_at") == 0.0  # clocks differ: never negative


def test_an_empty_queue_or_a_message_without_a_stamp_has_no_age():
    assert oldest_message_age(None, now=1.0, header="halo_sent_at") is None
    assert oldest_message_age(message({}), now=1.0, header="halo_sent_at") is None
    assert oldest_message_age(b"not json", now=1.0, header="halo_sent_at") is None
    assert oldest_message_age(message({"halo_sent_at": "soon"}), now=1.0, header="halo_sent_at") is None


def test_each_open_breaker_is_one_series_and_the_kept_work_is_counted():
    import fakeredis

    from reconciler.adapters.coordination.breaker import RedisBreaker
    from reconciler.adapters.metrics import StateCollector
    from reconciler.core.breaker import fingerprint
    from reconciler.core.vocabulary import Verdict

    redis = fakeredis.FakeRedis()
    collector = StateCollector(redis=lambda: redis, session=lambda: None, queues=(), sent_at_header="x")
    breaker = RedisBreaker(redis, key_fingerprint=fingerprint("k"), base_seconds=60, cap_seconds=3600)
    [gauge, kept] = list(collector._breakers(redis))
    assert gauge.samples == [] and kept.samples[0].value == 0
    breaker.trip(Verdict.QUOTA_EXCEEDED, now=0)
    breaker.trip(Verdict.UNAUTHORIZED, now=0)
    breaker.keep(7)
    [gauge, kept] = list(collector._breakers(redis))
    assert sorted((s.labels["cause"], s.labels["scope"]) for s in gauge.samples) == [
        ("quota_exceeded", "integrator"), ("unauthorized", f"key:{fingerprint('k')}")]
    assert kept.samples[0].value == 1

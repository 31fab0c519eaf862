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

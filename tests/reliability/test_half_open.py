"""The hook's bound holds against a half-open broker and a half-open coordination store.

A server that accepts TCP connections and never answers is what a broker looks like after a failover
behind a load balancer, or across a firewall that drops packets: before, ``report_forbidden`` was
still blocked after 20 s on the broker publish, which had no socket timeout. Now every connection
the hook uses has a connect and a read/write timeout and the publish retries once
(``worker.publishing.hook_bound``): the report is refused (False), the mark it set is taken back,
and the application goes on.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from models import PmsType
from reconciler.adapters.coordination import keys
from tests.integration.conftest import use_environment
from tests.reliability.conftest import onboard_fleet
from worker import publishing
from worker.celery_app import app
from worker.config import get_settings
from worker.hooks import report_forbidden

pytestmark = pytest.mark.integration


@pytest.fixture
def silent_server():
    """A TCP server on loopback that accepts every connection and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)  # kept open, read from never: the peer waits for an answer that never comes

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1], held
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


def timed_report(guid: str, limit: float) -> tuple[bool | None, float]:
    """``report_forbidden`` in a thread, so a hook that hangs fails this test instead of hanging it."""
    outcome: list[bool] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: outcome.append(report_forbidden(guid, "Forbidden")), daemon=True)
    thread.start()
    thread.join(timeout=limit)
    return (outcome[0] if outcome else None), time.monotonic() - started


def test_a_half_open_broker_cannot_hold_the_hook(stack, silent_server, monkeypatch, observe):
    sim, env = stack
    port, held = silent_server
    [pid], guids = onboard_fleet(sim, PmsType.ZEDMED, ["ZM1"])
    client = redis.Redis.from_url(env["BROKER_URL"])
    bound = publishing.hook_bound(get_settings().report_timeout_seconds)
    # The coordination store answers; only the broker the publish goes to is half-open.
    monkeypatch.setattr(app.conf, "broker_url", f"redis://127.0.0.1:{port}/0")
    publishing.reset()
    try:
        taken, blocked = timed_report(guids[pid], limit=3 * bound.seconds)
        assert taken is False, f"report_forbidden did not return within {3 * bound.seconds:.1f} s" \
            if taken is None else "a report whose publish never reached the broker must not count as taken"
        assert held, "the hook never reached the silent broker: the test proves nothing"
        assert not client.exists(keys.dirty(pid))  # the mark was taken back: the next report publishes
        assert client.llen("reconcile") == 0
    finally:
        monkeypatch.undo()
        publishing.reset()
    # The broker back: the next report is taken and its task is in the queue.
    assert report_forbidden(guids[pid], "Forbidden") is True
    assert client.llen("reconcile") == 1
    client.close()
    observe(fault="half-open broker (accepts, never answers)",
            how="the coordination store up; the publish pointed at a TCP server that accepts and never answers; "
                f"report timeout {get_settings().report_timeout_seconds} s",
            observed=f"report_forbidden returned False after {blocked:.2f} s (bound {bound.seconds:.2f} s), "
                     "the queued mark taken back; the next report, broker back, was taken and queued",
            figures={"reports lost": "0 (1 refused: False, the application knows)", "practices left unreconciled": 0,
                     "GUIDs switched twice": 0, "tickets opened twice": 0, "Halo calls": 0,
                     "longest block": f"{blocked:.2f} s"})


def test_a_half_open_coordination_store_cannot_hold_the_hook(silent_server, monkeypatch, observe):
    port, held = silent_server
    use_environment(monkeypatch, {"BROKER_URL": f"redis://127.0.0.1:{port}/0"})
    timeout = get_settings().report_timeout_seconds
    guid = "11111111-1111-4111-8111-111111111111"
    taken, blocked = timed_report(guid, limit=3 * publishing.hook_bound(timeout).seconds)
    assert taken is False, "report_forbidden did not return in time" if taken is None else "taken by a silent store"
    assert held, "the hook never reached the silent store: the test proves nothing"
    observe(fault="half-open coordination store and broker (accepts, never answers)",
            how=f"BROKER_URL (the store and the broker) a TCP server that accepts and never answers; report "
                f"timeout {timeout} s",
            observed=f"report_forbidden returned False after {blocked:.2f} s; nothing written",
            figures={"reports lost": "0 (1 refused: False, the application knows)", "practices left unreconciled": 0,
                     "GUIDs switched twice": 0, "tickets opened twice": 0, "Halo calls": 0,
                     "longest block": f"{blocked:.2f} s"})

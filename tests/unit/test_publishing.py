"""Publish bounds: one rule for the broker connections' timeouts, the publish retries and the queued
marks' pending lifetime."""

from __future__ import annotations

import fakeredis
import pytest

from worker import publishing, wiring
from worker.celery_app import app
from worker.config import get_settings


@pytest.mark.parametrize("timeout", [0.05, 0.5, 2.0, 30.0])
def test_the_hook_bound_adds_up(timeout):
    bound = publishing.hook_bound(timeout)
    # two attempts, each a connect and two reads, one wait between them, one wait for a pooled connection
    assert bound.seconds == pytest.approx(2 * (timeout + 2 * timeout) + timeout / 2 + timeout)
    assert bound.seconds < bound.mark_seconds <= bound.seconds + publishing.MARK_MARGIN_SECONDS + 1
    assert bound.retry_policy()["max_retries"] == 1
    assert bound.transport_options() == {"socket_timeout": timeout, "socket_connect_timeout": timeout}


def test_every_broker_connection_of_the_app_is_bounded():
    options = app.conf.broker_transport_options
    assert options["socket_timeout"] == publishing.WORKER.socket_timeout
    assert options["socket_connect_timeout"] == publishing.WORKER.connect_timeout
    # kombu's BRPOP blocks brpop_timeout (1 s) at a time: a shorter read timeout would cut it short
    assert publishing.WORKER.socket_timeout > 1
    assert app.conf.task_publish_retry is True
    assert app.conf.task_publish_retry_policy["max_retries"] == publishing.WORKER.retries


def test_the_marks_pending_lifetimes_come_from_the_publish_bounds(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_REPORT_TIMEOUT_SECONDS", "1.5")
    get_settings.cache_clear()
    settings = get_settings()
    monkeypatch.setattr(wiring.redis_clients, "get_redis", lambda **_: fakeredis.FakeRedis())
    reporter = wiring.reporter(bounded=True)
    assert reporter.pending_seconds == publishing.hook_bound(1.5).mark_seconds
    assert reporter.queued_seconds == settings.broker_visibility_timeout_seconds
    queue = wiring.work_queue()
    assert queue.pending_seconds == publishing.WORKER.mark_seconds
    assert queue.queued_seconds == settings.broker_visibility_timeout_seconds

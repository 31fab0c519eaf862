"""Task events for Flower: off by default, on with HALO_RECONCILER_TASK_EVENTS (the README's Flower section)."""

from __future__ import annotations

from worker.celery_app import create_app
from worker.config import get_settings


def test_task_events_follow_the_setting(monkeypatch):
    get_settings.cache_clear()
    off = create_app().conf
    assert (off.worker_send_task_events, off.task_send_sent_event) == (False, False)
    monkeypatch.setenv("HALO_RECONCILER_TASK_EVENTS", "true")
    get_settings.cache_clear()
    on = create_app().conf
    assert (on.worker_send_task_events, on.task_send_sent_event) == (True, True)
    get_settings.cache_clear()

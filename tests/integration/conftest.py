"""Shared pieces of the integration tests: the real stack (workers and beats: ``tests.utils.workers``)."""

from __future__ import annotations

import pytest

from worker import db
from worker.celery_app import follow_settings
from worker.config import get_settings
from tests.utils.pairing import RecordingSimulator
from worker.simulator import serve

KEY = "storm-test-key-41d9"


@pytest.fixture
def stack(monkeypatch, tmp_path, redis_url, postgres_url):
    """Simulator on loopback, PostgreSQL migrated, environment pointing every process at them."""
    # The simulator with pairing (a test shim until worker.simulator models pairing itself).
    sim = RecordingSimulator(key=KEY)
    with serve(sim, host="127.0.0.1", port=0) as server:
        env = {
            "HALO_BASE_URL": server.url,
            "HALO_SUBSCRIPTION_KEY": KEY,
            "BROKER_URL": redis_url,
            "DATABASE_URL": postgres_url,
            "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data"),
            "HALO_RECONCILER_LOG_FORMAT": "json",
        }
        use_environment(monkeypatch, env)
        db.upgrade_schema()
        yield sim, env


def use_environment(monkeypatch, env: dict[str, str]) -> None:
    """Point this process at ``env``: settings, engine and broker follow it (undone after the test)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    db.reset_engine()
    follow_settings()

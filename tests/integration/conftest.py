"""Shared pieces of the integration tests: the real stack and real Celery worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worker import db
from worker.celery_app import follow_settings
from worker.config import get_settings
from tests.utils.pairing import PairingSimulator
from worker.simulator import serve

KEY = "storm-test-key-41d9"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(monkeypatch, tmp_path, redis_url, postgres_url):
    """Simulator on loopback, PostgreSQL migrated, environment pointing every process at them."""
    # The simulator with pairing (a test shim until worker.simulator models pairing itself).
    sim = PairingSimulator(key=KEY)
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


def start_workers(env: dict[str, str], tmp_path: Path, count: int = 2, *, name: str = "worker",
                  concurrency: int = 2, loglevel: str = "WARNING") -> list[subprocess.Popen]:
    """Celery workers as process groups; each logs to ``tmp_path / f"{name}{i}.log"``."""
    procs = []
    for i in range(count):
        log = tmp_path / f"{name}{i}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool", "prefork", "--concurrency",
             str(concurrency), "--queues", "events,reconcile,sweep,deliver", "--hostname", f"{name}{i}@%h",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", loglevel],
            cwd=ROOT, env={**os.environ, **env}, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log = log  # type: ignore[attr-defined]
        procs.append(proc)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_until(predicate, timeout: float = 90.0, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()

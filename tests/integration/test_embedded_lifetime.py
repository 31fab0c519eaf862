"""The embedded Valkey server has a lifetime: idle with no client, or its data directory gone, it
stops by itself; ``halo-reconciler embedded stop`` stops it; nothing it started is left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, embedded_leftovers
from tests.utils.waiting import wait_until
from worker import coordination
from worker.config import get_settings

pytestmark = pytest.mark.integration

GUID = "11111111-1111-4111-8111-111111111111"


def alive(pid: int | None) -> bool:
    return pid is not None and coordination._alive(pid)


def looks(client) -> int:
    """How many times the watcher has listed the server's clients (once a second)."""
    stats = client.info("commandstats")
    return int(next((v["calls"] for k, v in stats.items() if k.replace("cmdstat_", "") == "client|list"), 0))


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def idle_after(monkeypatch):
    def set_idle(seconds: int) -> Path:
        monkeypatch.setenv("HALO_RECONCILER_EMBEDDED_IDLE_SECONDS", str(seconds))
        get_settings.cache_clear()
        return get_settings().data_dir
    return set_idle


def test_an_idle_server_stops_by_itself_and_starts_again_when_needed(idle_after):
    data = idle_after(2)
    client = coordination.get_redis()
    client.set("halo:probe", "kept")  # persisted: the stop loses nothing
    pid = coordination.embedded_server_pid()
    assert alive(pid)
    assert embedded_leftovers(data.resolve())  # the server and its watcher
    coordination.reset_client()  # this process lets go: no client is left
    wait_until(lambda: not alive(pid), timeout=30, interval=0.2, what="the idle server stopping")
    wait_until(lambda: not embedded_leftovers(data.resolve()), timeout=10, interval=0.2, what="its watcher exiting")
    assert coordination.get_redis().get("halo:probe") == b"kept"  # started again, with its data
    assert coordination.embedded_server_pid() not in (None, pid)


def test_a_client_keeps_it_and_a_removed_data_directory_stops_it(idle_after):
    data = idle_after(1)
    client = coordination.get_redis()
    assert client.ping()
    pid = coordination.embedded_server_pid()
    # Held well past the idle time by this process's open connection: the watcher's check is on
    # clients, not a clock, so seeing it still up after a few of its one-second looks is enough.
    wait_until(lambda: looks(client) >= 4, timeout=30, interval=0.5, what="the watcher looking several times")
    assert alive(pid) and client.ping()
    shutil.rmtree(data)
    wait_until(lambda: not alive(pid), timeout=30, interval=0.2, what="the server of a removed directory stopping")
    wait_until(lambda: not embedded_leftovers(data.resolve()), timeout=10, interval=0.2, what="its watcher exiting")


def test_embedded_stop_stops_it_and_says_so(tmp_path):
    env = {"HALO_RECONCILER_DATA_DIR": str(tmp_path / "cli-data")}
    assert cli("report-403", "--guid", GUID, env=env).returncode == 0  # starts the server on demand
    pid = int((tmp_path / "cli-data" / "valkey.pid").read_text())
    assert alive(pid)
    stopped = cli("embedded", "stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped the embedded Valkey server (pid {pid})" in stopped.stdout
    assert not alive(pid)
    wait_until(lambda: not embedded_leftovers((tmp_path / "cli-data").resolve()), timeout=10, interval=0.2,
               what="no server or watcher left for the data directory")
    again = cli("embedded", "stop", "--json", env=env)
    assert again.returncode == 0 and '"stopped": false' in again.stdout

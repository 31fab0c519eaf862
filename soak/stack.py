"""The soak's real parts: Valkey (behind the stalling proxy), PostgreSQL, the simulator, two workers,
beat, ``serve`` and a webhook receiver, every one on loopback and every one stopped by ``close``.

Built on the suite's helpers (``tests.utils.servers``, ``tests.utils.workers``, ``tests.utils.receivers``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from soak.proxy import StallingProxy
from tests.utils.receivers import http_receiver
from tests.utils.servers import PostgresServer, RedisServer, free_port, port_open, start_postgres, start_redis
from tests.utils.waiting import wait_until
from tests.utils.workers import ROOT, start_beats, start_workers
from worker.processes import start_in_new_group, stop_process_groups
from worker.simulator.control import SimulatorControl

KEY = "soak-subscription-key"
TOKEN = "soak-api-token-" + "7" * 16

# Settings every process of the soak runs with: time scaled from hours to seconds so a few minutes
# see many sweeps, probes, re-checks and back-offs. A run's lock outlives a SIGKILLed run by the task
# limit (60 s) + 30 s, and the broker hands an unacknowledged message out again after 100 s: both
# expire within the settle phase (with the defaults, 30 and 60 minutes).
SOAK_SETTINGS = {
    "HALO_RECONCILER_SWEEP_INTERVAL_SECONDS": "5",
    "HALO_RECONCILER_SWEEP_STALE_AFTER_SECONDS": "30",
    "HALO_RECONCILER_BREAKER_PROBE_SECONDS": "5",
    "HALO_RECONCILER_BREAKER_PROBE_MAX_SECONDS": "20",
    "HALO_RECONCILER_RECHECK_MIN_SECONDS": "2",
    "HALO_RECONCILER_RECHECK_MAX_SECONDS": "20",
    "HALO_RECONCILER_BACKOFF_MIN_SECONDS": "3",
    "HALO_RECONCILER_BACKOFF_MAX_SECONDS": "20",
    "HALO_RECONCILER_HALO_TIMEOUT_SECONDS": "2",
    "HALO_RECONCILER_HALO_MAX_ATTEMPTS": "3",
    "HALO_RECONCILER_HALO_RETRY_AFTER_CAP_SECONDS": "1",
    "HALO_RECONCILER_HALO_BACKOFF_BASE_SECONDS": "0.2",
    "HALO_RECONCILER_MASS_CHANGE_MIN": "10000",
    "HALO_RECONCILER_TASK_TIME_LIMIT_SECONDS": "60",
    "HALO_RECONCILER_BROKER_VISIBILITY_TIMEOUT_SECONDS": "100",
    "HALO_RECONCILER_REPORT_TIMEOUT_SECONDS": "0.5",
}


class SoakStack:
    def __init__(self, *, keep_logs: bool = False) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="halo-soak-"))
        self.keep_logs = keep_logs
        self.started: list[subprocess.Popen] = []  # every process group the soak started, for the end check
        self.workers: list[subprocess.Popen | None] = [None, None]
        self.beats: list[subprocess.Popen] = []
        self.extra_beats: list[subprocess.Popen] = []
        self._restarts = 0
        self.crashes: list[str] = []  # processes that exited without the soak stopping them
        self._exit = contextlib.ExitStack()
        self.redis: RedisServer | None = None
        self.postgres: PostgresServer | None = None
        self.proxy: StallingProxy | None = None
        self.serve: subprocess.Popen | None = None
        self.sim_proc: subprocess.Popen | None = None

    # --- start ------------------------------------------------------------------------------------

    def start(self) -> None:
        self.redis = start_redis(self.tmp / "valkey", appendonly=True)
        self.started.append(self.redis.proc)
        self.proxy = StallingProxy(self.redis.port)
        self.postgres = start_postgres()
        self.started.append(self.postgres.proc)
        self.database_url = self.postgres.create_database("soak")
        self.sim_proc = start_in_new_group(
            [sys.executable, "-m", "worker.cli", "simulator", "--port", "0", "--key", KEY],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=open(self.tmp / "simulator.log", "wb"), text=True,
            env={**os.environ, "HALO_RECONCILER_DATA_DIR": str(self.tmp / "sim")})
        self.started.append(self.sim_proc)
        self.sim_url = self.sim_proc.stdout.readline().strip().split()[-1]
        self.sim = SimulatorControl(self.sim_url, key=KEY)
        self.webhook = self._exit.enter_context(http_receiver())
        self.serve_port = free_port()
        self.env = {
            "BROKER_URL": self.proxy.url,
            "DATABASE_URL": self.database_url,
            "HALO_BASE_URL": self.sim_url,
            "HALO_SUBSCRIPTION_KEY": KEY,
            "HALO_RECONCILER_DATA_DIR": str(self.tmp / "data"),
            "HALO_RECONCILER_LOG_FORMAT": "json",
            "HALO_RECONCILER_LOG_LEVEL": "INFO",
            "HALO_RECONCILER_API_TOKENS": TOKEN,
            "HALO_RECONCILER_WEBHOOK_URL": self.webhook.url + "/hook",
            "HALO_RECONCILER_WEBHOOK_SECRET": secrets.token_hex(16),
            # Apprise's JSON notification to the same receiver: the notify target is exercised too.
            "HALO_RECONCILER_NOTIFY_URLS": self.webhook.url.replace("http://", "json://") + "/notify",
            **SOAK_SETTINGS,
        }

    def start_processes(self) -> None:
        """Two workers, one beat and ``serve`` (after the schema and the fleet are in place)."""
        for i in range(2):
            self.start_worker(i)
        self.beats = start_beats(self.env, self.tmp, count=1)
        self.started += self.beats
        self.serve = start_in_new_group(
            [sys.executable, "-m", "worker.cli", "serve", "--port", str(self.serve_port)],
            cwd=ROOT, env={**os.environ, **self.env}, stdout=open(self.tmp / "serve.log", "wb"),
            stderr=subprocess.STDOUT)
        self.started.append(self.serve)
        wait_until(lambda: port_open(self.serve_port), timeout=60, what="serve listening",
                   log=self.tmp / "serve.log")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    def start_worker(self, i: int) -> subprocess.Popen:
        self._restarts += 1
        proc = start_workers(self.env, self.tmp, 1, name=f"w{i}-{self._restarts}-", concurrency=2,
                             extra=("--prefetch-multiplier", "1"), ready=True)[0]
        self.workers[i] = proc
        self.started.append(proc)
        return proc

    # --- faults -----------------------------------------------------------------------------------

    def pool_children(self, i: int) -> list[int]:
        proc = self.workers[i]
        if proc is None or proc.poll() is not None:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == proc.pid:
                        children.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue
        return sorted(children)

    def kill_worker(self, i: int) -> None:
        proc = self.workers[i]
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.workers[i] = None

    def start_extra_beat(self) -> None:
        self._restarts += 1
        logs = self.tmp / f"beat-extra-{self._restarts}"
        logs.mkdir()
        beat = start_beats(self.env, logs, count=1)[0]
        self.extra_beats.append(beat)
        self.started.append(beat)

    def stop_extra_beats(self) -> None:
        stop_process_groups(self.extra_beats, timeout=10)
        self.extra_beats = []

    def notice_crashes(self) -> None:
        """A worker, beat or ``serve`` that exited by itself is a violation (recorded with the last
        error line of its log); a worker is started again, as a supervisor would."""
        for i, proc in enumerate(self.workers):
            if proc is not None and proc.poll() is not None:
                self.crashes.append(f"worker {proc.log.name} exited by itself (code {proc.returncode}): "
                                    f"{_last_error(proc.log)}")
                self.workers[i] = None
                self.start_worker(i)
        for proc in [*self.beats, self.serve]:
            if proc is not None and proc.poll() is not None and not getattr(proc, "noticed", False):
                proc.noticed = True
                log = getattr(proc, "log", self.tmp / "serve.log")
                self.crashes.append(f"{Path(log).name} exited by itself (code {proc.returncode}): {_last_error(Path(log))}")

    def ensure_running(self) -> None:
        """Every part up again (after a fault that was still in force when the chaos phase ended)."""
        if self.proxy.stalled:
            self.proxy.resume()
        for i, proc in enumerate(self.workers):
            if proc is None or proc.poll() is not None:
                self.start_worker(i)
        self.stop_extra_beats()

    def serve_ready(self) -> bool:
        try:
            return httpx.get(self.api_url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # --- stop -------------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop everything started; return what is still running afterwards (nothing, when all is well)."""
        procs = [p for p in self.started if p is not None]
        stop_process_groups([p for p in procs if p not in (self.redis and self.redis.proc,
                                                             self.postgres and self.postgres.proc)], timeout=20)
        with contextlib.suppress(Exception):
            self.sim.close()
        if self.proxy is not None:
            self.proxy.close()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
        self._exit.close()
        time.sleep(0.2)
        left = []
        for proc in procs:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            left.append(f"process group {proc.pid} ({' '.join(map(str, proc.args[:4]))}) still running")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for name, port in (("Valkey", self.redis and self.redis.port), ("PostgreSQL", self.postgres and self.postgres.port),
                           ("serve", self.serve_port if self.serve else None)):
            if port and port_open(port):
                left.append(f"{name} still listening on 127.0.0.1:{port}")
        if not self.keep_logs and not left:
            import shutil

            shutil.rmtree(self.tmp, ignore_errors=True)
        return left


def _last_error(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "CRITICAL" in line or "Error" in line or '"level": "error"' in line:
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "empty log"

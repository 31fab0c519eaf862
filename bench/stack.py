"""Real parts for the benchmarks: Valkey, PostgreSQL, the simulator and Celery workers as processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.utils.servers import start_postgres, start_redis
from tests.utils.workers import QUEUES, ROOT, start_workers, stop_workers  # noqa: F401  (ROOT: bench.sweep)
from worker.processes import start_in_new_group

KEY = "bench-subscription-key"


class Stack:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="halo-bench-"))
        self.redis = start_redis(self.tmp / "valkey")
        self.postgres = start_postgres()
        self.sim = start_in_new_group(
            [sys.executable, "-m", "worker.cli", "simulator", "--port", "0", "--key", KEY],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "HALO_RECONCILER_DATA_DIR": str(self.tmp / "sim")},
        )
        self.sim_url = self.sim.stdout.readline().strip().split()[-1]
        self.procs: list[subprocess.Popen] = []

    def env(self, database: str, **extra: str) -> dict[str, str]:
        return {
            "BROKER_URL": self.redis.url,
            "DATABASE_URL": self.postgres.url(database),
            "HALO_BASE_URL": self.sim_url,
            "HALO_SUBSCRIPTION_KEY": KEY,
            "HALO_RECONCILER_DATA_DIR": str(self.tmp / "data"),
            "HALO_RECONCILER_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "HALO_RECONCILER_LOG_FORMAT": "json",
            **extra,
        }

    def use(self, env: dict[str, str]) -> None:
        """Point this process at ``env`` (settings, engine, broker, coordination client)."""
        from worker.celery_app import follow_settings
        from worker.config import get_settings

        from worker.logging import configure_logging

        os.environ.update(env)
        forget_clients()
        follow_settings()
        configure_logging(get_settings())  # the benchmark's own process logs at WARNING too

    def start_workers(self, env: dict[str, str], *, app: str = "worker", count: int = 2, concurrency: int = 8,
                      queues: str = QUEUES, pool: str = "prefork") -> list[subprocess.Popen]:
        """Workers at INFO, one task prefetched each, returned once every one is consuming."""
        started = start_workers(env, self.tmp, count, name=f"{app}-{len(self.procs)}-", app=app,
                                concurrency=concurrency, queues=queues, extra=("--prefetch-multiplier", "1"),
                                ready=True, pool=pool)
        self.procs += started
        return started

    def stop(self, procs: list[subprocess.Popen]) -> None:
        stop_workers(procs, timeout=30)

    def close(self) -> None:
        self.stop(self.procs + [self.sim])
        self.redis.stop()
        self.postgres.stop()
        if sys.exc_info()[0] is None:  # called from a ``finally``: keep the logs when a run failed
            shutil.rmtree(self.tmp, ignore_errors=True)


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in a process group (a Celery worker and its children)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1024


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system, including reaped children) of a process and all its descendants.

    By parentage, not process group: PostgreSQL's backends start sessions of their own.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    parent, used = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parent[int(entry.name)] = int(stat[1])
            used[int(entry.name)] = sum(int(v) for v in stat[11:15])  # utime, stime, cutime, cstime
        except (OSError, IndexError, ValueError):
            continue

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parent.get(pid, 0)
        return False

    return sum(ticks_ for pid, ticks_ in used.items() if descends(pid)) / ticks


def tree_cpu_ns_seconds(root: int) -> float:
    """CPU time of a process and its live descendants, every thread, from ``/proc/<pid>/task/*/schedstat``
    (the scheduler's nanosecond count) instead of ``stat``'s 10 ms ticks. For the steady part of a
    benchmark, where no process of the tree exits (a reaped child's time is only in ``stat``'s
    ``cutime``): a few hundred tasks of about a millisecond each are then measured to the microsecond,
    not to a tick per hundred tasks."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parent.get(pid, 0)
        return False

    total = 0
    for pid in parent:
        if not descends(pid):
            continue
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


class MemorySampler:
    """Peak resident memory of each worker (its whole process group), sampled every 0.2 s."""

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        self.procs = procs
        self.peaks = [0.0 for _ in procs]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, proc in enumerate(self.procs):
                self.peaks[i] = max(self.peaks[i], group_rss_mb(proc.pid))
            time.sleep(0.2)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def forget_clients() -> None:
    """Drop what this process built from its settings (the settings, the engine, the clients), so the
    next use reads the environment as it is now."""
    from worker import coordination, db, hooks, wiring
    from worker.config import get_settings

    get_settings.cache_clear()
    db.reset_engine()
    wiring.close_halo_client()
    coordination.reset_client()
    hooks.reset()

"""Celery workers and beats as real processes, for the integration suites and the benchmarks.

Each is its own process group (a worker and its pool stop together) and logs to a file the tests
read: ``proc.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from reconciler.adapters.coordination import keys
from tests.utils.waiting import wait_until
from worker.celery_app import QUEUES as QUEUE_NAMES
from worker.processes import start_in_new_group, stop_process_groups

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ",".join(QUEUE_NAMES)


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    proc = start_in_new_group(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=open(log, "wb"),
                              stderr=subprocess.STDOUT)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def start_workers(env: dict[str, str], logs: Path, count: int = 2, *, name: str = "worker", app: str = "worker",
                  concurrency: int = 2, queues: str = QUEUES, loglevel: str = "WARNING",
                  extra: tuple[str, ...] = (), ready: bool = False, timeout: float = 60,
                  pool: str = "prefork") -> list[subprocess.Popen]:
    """``count`` workers, each logging to ``logs / f"{name}{i}.log"``; ``pool``: Celery's pool.

    ``ready``: return only once each has logged that it is consuming (at INFO; stopped if not in time).
    """
    if ready:
        loglevel = "INFO"
    procs = [
        _start([sys.executable, "-m", "celery", "-A", app, "worker", "--pool", pool, "--concurrency",
                str(concurrency), "--queues", queues, "--hostname", f"{name}{i}@%h",
                "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", loglevel, *extra],
               env, logs / f"{name}{i}.log")
        for i in range(count)
    ]
    if ready:
        try:
            wait_until(lambda: all(b" ready." in p.log.read_bytes() for p in procs),  # type: ignore[attr-defined]
                       timeout=timeout, interval=0.1, what="the workers logging ready", log=procs[0].log)
        except BaseException:
            stop_workers(procs)
            raise
    return procs


def start_beats(env: dict[str, str], logs: Path, count: int = 1) -> list[subprocess.Popen]:
    """``count`` beats (``halo-reconciler beat``), each with its own schedule file and ``beat{i}.log``."""
    return [_start([sys.executable, "-m", "worker.cli", "beat", "--schedule", str(logs / f"beat{i}")],
                   env, logs / f"beat{i}.log")
            for i in range(count)]


def stop_workers(procs: list[subprocess.Popen], *, timeout: float = 20) -> None:
    """Stop workers, beats or any process groups: SIGTERM together, SIGKILL what is left after ``timeout``."""
    stop_process_groups(procs, timeout=timeout)


def is_idle(client: redis.Redis) -> bool:
    """No work anywhere: no message queued or held unacknowledged by a worker (kombu's ``unacked``
    hash), no practice waiting for a run (``halo:dirty:``) or in one (``halo:processing:``)."""
    if any(client.llen(queue) for queue in QUEUE_NAMES) or client.hlen("unacked"):
        return False
    pending = (keys.dirty("*"), keys.processing("*"))
    return not any(next(client.scan_iter(match=pattern, count=1000), None) for pattern in pending)


def wait_until_idle(broker_url: str, *, timeout: float = 60) -> None:
    """Wait until the workers have nothing left to do, seen twice in a row: a message moving from a
    queue to ``unacked`` is briefly in neither."""
    client = redis.Redis.from_url(broker_url)
    in_a_row = 0

    def idle_twice() -> bool:
        nonlocal in_a_row
        in_a_row = in_a_row + 1 if is_idle(client) else 0
        return in_a_row >= 2

    try:
        wait_until(idle_twice, timeout=timeout, what="the workers finishing every queued and running reconciliation")
    finally:
        client.close()

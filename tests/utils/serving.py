"""``halo-reconciler serve`` as a real process, and what a process holds (its threads, its sockets).

``/proc`` is read directly: a socket of a process is a ``socket:[inode]`` link under ``fd/``, and
``/proc/net/tcp`` names the inode's remote port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.utils.servers import free_port
from tests.utils.waiting import wait_until
from tests.utils.workers import ROOT
from worker.processes import start_in_new_group, stop_process_group


@contextmanager
def running_serve(env: dict[str, str], log: Path, tokens: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``serve`` on a free loopback port: ``(url, process)``; stopped (and checked) at the end."""
    port = free_port()
    proc = start_in_new_group(
        [sys.executable, "-m", "worker.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env={**os.environ, **env, "HALO_RECONCILER_API_TOKENS": tokens},
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200

    try:
        wait_until(healthy, timeout=30, interval=0.1, what="serve answering /healthz", ignoring=(httpx.HTTPError,),
                   log=log)
        yield url, proc
    finally:
        stop_process_group(proc, timeout=20)
    assert proc.returncode != -signal.SIGKILL, "serve did not stop on SIGTERM"
    text = log.read_text()
    assert proc.returncode in (0, -signal.SIGTERM), text
    if env.get("HALO_RECONCILER_LOG_LEVEL", "INFO") in ("INFO", "DEBUG"):  # uvicorn says so at INFO
        assert "Finished server process" in text, text
    assert "Traceback" not in text, text


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line for {pid}")


def tcp_connections(pid: int, remote_port: int) -> int:
    """Established TCP connections the process holds to ``remote_port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if inode in inodes and state == "01" and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                count += 1
    return count

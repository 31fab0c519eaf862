"""The simulator as a real HTTP/1.1 server on loopback (threaded, keep-alive)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from worker.simulator.app import Simulator, SimulatorConfigError

MAX_BODY = 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (BrokenPipeError, ConnectionResetError)):
            return  # a client that timed out and left: what the timeout fault is for
        super().handle_error(request, client_address)


def _handler_for(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their pooled connections
        # Headers and body go out as two writes; with Nagle on, the second waits for the client's
        # delayed ACK (40 ms a response on Linux).
        disable_nagle_algorithm = True

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            status, headers, payload = sim.handle(self.command, path, query, dict(self.headers.items()), body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PUT = _dispatch

        def log_message(self, *args: object) -> None:  # one line per request would drown a benchmark
            pass

    return Handler


class SimulatorServer:
    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self._server = _Server((host, port), _handler_for(sim))
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="halo-simulator", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "SimulatorServer":
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()

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
    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    print(f"halo simulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if not stop.is_set():
            server._server.server_close()
        sys.stdout.flush()

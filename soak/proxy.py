"""A TCP proxy on loopback that can stop forwarding: the soak's broker stall.

Every client of the broker (workers, beats, ``serve``, the application's hook) connects to the proxy,
which relays bytes to Valkey. ``stall()`` stops relaying in both directions without closing anything:
connections stay open and silent, as behind a switch that drops packets. ``resume()`` forwards again
what was held back. New connections made during a stall are accepted and held too.
"""

from __future__ import annotations

import selectors
import socket
import threading


class StallingProxy:
    def __init__(self, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self._listener = socket.create_server((host, 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="soak-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def stalled(self) -> bool:
        return not self._forwarding.is_set()

    def stall(self) -> None:
        self._forwarding.clear()

    def resume(self) -> None:
        self._forwarding.set()

    def drop_connections(self) -> None:
        """Close every relayed connection (as when the server behind restarts)."""
        with self._lock:
            for sock in list(self._pairs):
                self._close(sock)

    def close(self) -> None:
        self._closing.set()
        self._forwarding.set()
        self._thread.join(timeout=5)
        with self._lock:
            for sock in list(self._pairs):
                self._close(sock)
        self._selector.close()
        self._listener.close()

    # --- the relay loop (one thread) -------------------------------------------------------------

    def _close(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()  # the server is down: the client sees the connection refused at once
            return
        for s in (client, upstream):
            s.setblocking(False)
        self._pairs[client], self._pairs[upstream] = upstream, client
        self._selector.register(client, selectors.EVENT_READ, "relay")
        self._selector.register(upstream, selectors.EVENT_READ, "relay")

    def _run(self) -> None:
        while not self._closing.is_set():
            if not self._forwarding.wait(timeout=0.2):
                continue  # stalled: nothing read, nothing written, every socket left as it is
            events = self._selector.select(timeout=0.2)
            with self._lock:
                for key, _ in events:
                    sock = key.fileobj
                    if key.data is None:
                        self._accept()
                        continue
                    if sock not in self._pairs or not self._forwarding.is_set():
                        continue
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._close(sock)
                        continue
                    try:
                        self._pairs[sock].setblocking(True)
                        self._pairs[sock].sendall(data)
                        self._pairs[sock].setblocking(False)
                    except OSError:
                        self._close(sock)

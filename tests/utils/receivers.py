"""Real receivers on loopback for what the worker sends out: an HTTP server (the webhook, Apprise's
``json://`` and Slack-compatible ``mmost://`` targets) and an SMTP server (aiosmtpd, for ``mailto://``).

Both run in threads of the test process and are stopped by the context manager that started them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.utils.servers import free_port


@dataclass
class HttpRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    url: str
    received: list[HttpRequest] = field(default_factory=list)
    fail_next: int = 0  # answer 503 to this many requests first

    def on(self, path: str) -> list[HttpRequest]:
        return [request for request in self.received if request.path == path]


@contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    lock = threading.Lock()
    state = HttpReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                failing = state.fail_next > 0
                if failing:
                    state.fail_next -= 1
                else:
                    state.received.append(HttpRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(503 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""


@dataclass
class SmtpReceiver:
    host: str
    port: int
    received: list[Mail] = field(default_factory=list)


@contextmanager
def smtp_receiver() -> Iterator[SmtpReceiver]:
    from aiosmtpd.controller import Controller  # the SMTP server only in the tests that receive mail

    state = SmtpReceiver(host="127.0.0.1", port=free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
            state.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos),
                                       message_from_bytes(envelope.content, policy=policy.default)))
            return "250 OK"

    controller = Controller(Handler(), hostname=state.host, port=state.port)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()

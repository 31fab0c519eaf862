"""Secret hygiene: with a recognisable subscription key (and webhook secret), run the paths that
touch them (onboarding, a switch, a business-change ticket, a 401 from Halo, webhook delivery,
DEBUG logging in the worker and in this process) and look for the secrets everywhere we write."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from sqlalchemy import MetaData, select

from models import PmsType, Practice, Ticket, TicketReason
from tests.integration.conftest import use_environment
from tests.reliability.conftest import count, rows
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers
from worker import admin, db
from worker.hooks import report_forbidden
from worker.simulator.faults import Fault

pytestmark = pytest.mark.integration

SECRET_KEY = "sk-HYGIENE-5c0ffee5-7e11-4a1e-9b0b-d15c105ed0ff"
WEBHOOK_SECRET = "whsec-HYGIENE-8badf00d"
SECRETS = (SECRET_KEY, WEBHOOK_SECRET, SECRET_KEY[:20])  # a prefix would betray it too


class Receiver(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.received.append(str(self.headers).encode() + b"\n" + body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def database_text() -> str:
    metadata = MetaData()
    engine = db.get_engine()
    metadata.reflect(engine)
    with engine.connect() as conn:
        return "\n".join(repr(row) for table in metadata.sorted_tables for row in conn.execute(select(table)))


def redis_text(url: str) -> str:
    client = redis.Redis.from_url(url)
    out = []
    for key in client.scan_iter("*"):
        kind = client.type(key)
        value = {b"string": client.get, b"hash": client.hgetall, b"list": lambda k: client.lrange(k, 0, -1),
                 b"set": client.smembers, b"zset": lambda k: client.zrange(k, 0, -1)}.get(kind, lambda k: b"")(key)
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def test_no_secret_is_written_anywhere(stack, tmp_path, monkeypatch, capfd, observe):
    sim, env = stack
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received = []
    sim.key = SECRET_KEY
    env = {**env, "HALO_SUBSCRIPTION_KEY": SECRET_KEY, "HALO_RECONCILER_LOG_LEVEL": "DEBUG",
           "HALO_RECONCILER_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/tickets",
           "HALO_RECONCILER_WEBHOOK_SECRET": WEBHOOK_SECRET}
    use_environment(monkeypatch, env)
    try:
        ids = {}
        for pms_id in ("BP1", "BP2", "BP3"):
            sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id=pms_id, practice_name=f"Clinic {pms_id}")
            out = admin.onboard("BestPractice", pms_id)
            ids[pms_id] = out
        moved = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
        sold = sim.change_guid(PmsType.BEST_PRACTICE, "BP2")
        sim.rename(sold, "Someone Else Pty Ltd")
        sim.change_guid(PmsType.BEST_PRACTICE, "BP3")

        [worker] = start_workers(env, tmp_path, count=1, ready=True)
        try:
            for pms_id in ("BP1", "BP2"):
                assert report_forbidden(ids[pms_id].halo_guid, "Forbidden")
            wait_until(lambda: rows(Practice, Practice.id == ids["BP1"].id)[0].halo_guid == moved)
            wait_until(lambda: count(Ticket, Ticket.reason == TicketReason.BUSINESS_CHANGE) == 1)
            # The 401 last: it opens the breaker for this key, and work after it waits for a probe.
            sim.inject(Fault("unauthorized", pms_id="BP3"))
            assert report_forbidden(ids["BP3"].halo_guid, "Forbidden")
            wait_until(lambda: count(Ticket, Ticket.reason == TicketReason.UNAUTHORIZED) == 1)
            wait_until(lambda: len(Receiver.received) >= 2, timeout=30, what="the webhook being called")
        finally:
            stop_workers([worker])
        # Every ticket, resolved ones too: a later successful call resolves the 401 ticket.
        tickets = json.dumps([t.model_dump(mode="json")
                              for t in admin.list_tickets() + admin.list_tickets(status="resolved")])
        places = {
            "worker log": worker.log.read_text(),  # type: ignore[attr-defined]
            "this process's output": "".join(capfd.readouterr()),
            "database": database_text(),
            "redis": redis_text(env["BROKER_URL"]),
            "tickets": tickets,
            "webhook requests": b"\n".join(Receiver.received).decode("utf-8", "replace"),
        }
        assert "401" in tickets or "key" in tickets  # the 401 ticket is there and says what happened
        for place, text in places.items():
            assert text, f"nothing captured from {place}: the check would prove nothing"
            for secret in SECRETS:
                assert secret not in text, f"a secret appears in {place}"
        sizes = ", ".join(f"{place} {len(text):,} chars" for place, text in places.items())
        observe(fault="secret hygiene", how="recognisable key and webhook secret; onboarding, a switch, a business "
                "change, a 401, webhook delivery, DEBUG logs",
                observed=f"neither secret (nor a 20-character prefix of the key) in: {sizes}")
    finally:
        server.shutdown()

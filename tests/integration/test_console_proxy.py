"""Trusted-proxy identity decided from the socket's peer address alone: the real ``serve`` (uvicorn, a
process of its own) on loopback, sent requests shaped as oauth2-proxy sends them
(``X-Forwarded-User``, ``X-Forwarded-Email``, ``X-Forwarded-For`` with the proxy's own hop appended,
``X-Forwarded-Proto``/``-Host``), and a loopback client that forges them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from models import PmsType
from tests.integration.test_console import PASSWORD, csrf_of
from tests.utils.pairing import recording_simulator
from tests.utils.servers import free_port
from tests.utils.waiting import wait_until
from worker import admin
from worker.processes import start_in_new_group, stop_process_groups

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "console-proxy-key-3c7a"


@pytest.fixture
def held(monkeypatch):
    with recording_simulator(monkeypatch, KEY) as sim:
        sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Halo Clinic")
        practice = admin.onboard("BestPractice", "BP1")
        new = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
        sim.rename(new, "Harbour Dental")
        assert str(admin.reconcile_now(practice.id).action) == "held"
        admin.add_operator("alice", "approver", PASSWORD)
        admin.add_operator("boss", "admin", PASSWORD)
        yield practice.id


@contextmanager
def serve(tmp_path: Path, trusted: str) -> Iterator[str]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {**os.environ, "HALO_RECONCILER_LOG_FORMAT": "json",
           "HALO_RECONCILER_CONSOLE_PROXY_HEADER": "X-Forwarded-User",
           "HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES": trusted}
    proc = start_in_new_group([sys.executable, "-m", "worker.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, timeout=60,
                   ignoring=(httpx.HTTPError,), what="serve answering /healthz", log=log)
        yield url
    finally:
        stop_process_groups([proc], timeout=20)


def oauth2_proxy(user: str, client_ip: str = "203.0.113.7") -> dict[str, str]:
    """What oauth2-proxy on this host adds to the browser's request (it appends its own peer hop)."""
    return {"X-Forwarded-User": user, "X-Forwarded-Email": f"{user}@example.test",
            "X-Forwarded-For": f"{client_ip}, 127.0.0.1", "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "console.example.test"}


def test_a_proxy_on_loopback_is_trusted_whatever_x_forwarded_for_says(held, tmp_path):
    with serve(tmp_path, "127.0.0.1/32") as url:
        r = httpx.get(f"{url}/", headers=oauth2_proxy("alice"))
        assert r.status_code == 200 and 'id="operator-name">alice<' in r.text
        change = httpx.get(f"{url}/practices/{held}/change", headers=oauth2_proxy("alice"))
        r = httpx.post(f"{url}/practices/{held}/reject", headers=oauth2_proxy("alice"),
                       data={"csrf": csrf_of(change.text), "note": "not this owner"})
        assert r.status_code == 303
    assert [(e.actor, e.action) for e in admin.audit(held) if e.actor != "worker"] == [("alice", "rejected")]


def test_a_loopback_client_cannot_pose_as_a_trusted_proxy(held, tmp_path):
    """TRUSTED_PROXIES names another host: a loopback client forging X-Forwarded-For with that host's
    address, and X-Forwarded-User, is still a loopback peer: the sign-in page, and its forged POST
    changes nothing."""
    with serve(tmp_path, "10.9.9.9") as url:
        forged = {**oauth2_proxy("boss", client_ip="10.9.9.9"), "X-Forwarded-For": "10.9.9.9", "X-Real-IP": "10.9.9.9"}
        r = httpx.get(f"{url}/practices/{held}/change", headers=forged)
        assert r.status_code == 401 and 'id="signin"' in r.text and "Harbour" not in r.text
        r = httpx.post(f"{url}/practices/{held}/reject", headers=forged, data={"csrf": "anything", "note": "forged"})
        assert r.status_code == 401
    assert admin.practice(held).state == "held"
    assert [e.actor for e in admin.audit(held)] == ["worker"]

"""``demo --serve`` leads somewhere: after the walkthrough the console answers at the printed URL, the
printed password signs in, approving the held change there works (the simulator still answers), and
Ctrl-C stops every process the demo started."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_demo import ROOT, alive
from tests.utils.servers import free_port
from worker.processes import start_in_new_group, stop_process_group

pytestmark = pytest.mark.integration


def read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    """The demo's stdout up to and including the line containing ``marker``."""
    out = ""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while marker not in out:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"no {marker!r} from the demo (exit {proc.poll()}):\n{out[-3000:]}")
        if selector.select(timeout=1):
            line = proc.stdout.readline()
            out += line
    return out


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_demo_serve_prints_a_console_and_password_that_work_and_ctrl_c_stops_everything():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALO_") and k not in ("DATABASE_URL", "BROKER_URL")}
    port = free_port()
    proc = start_in_new_group([sys.executable, "-m", "worker.cli", "demo", "--serve", "--port", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        out = read_until(proc, "press Ctrl-C", timeout=300)
        url = re.search(r"the operator console \(pid \d+\): (http://127\.0\.0\.1:\d+)/", out).group(1)
        assert url == f"http://127.0.0.1:{port}"
        name, password = re.search(r"sign in as (\S+) with the password (\S+)", out).groups()
        assert "$USER" not in out and "halo-reconciler " not in out.split("10. ")[1]
        change = re.search(rf"held for a person: Hobart Road Surgery, {re.escape(url)}(/practices/(\d+)/change)", out)
        assert change, out[-2000:]
        pids = [int(p) for p in re.findall(r"\(pid (\d+)", out)]
        assert len(pids) == 4  # worker, beat, serve, simulator

        with httpx.Client(base_url=url, timeout=30) as client:
            token = csrf_of(client.get("/signin").text)
            signed = client.post("/signin", data={"csrf": token, "name": name, "password": password, "next": "/"})
            assert signed.status_code == 303 and signed.headers["location"] == "/"
            page = client.get(change.group(1))
            assert page.status_code == 200 and "Hobart Road Surgery" in page.text
            approved = client.post(f"/practices/{change.group(2)}/approve",
                                   data={"csrf": csrf_of(page.text), "note": "the new owners confirmed by phone"})
            assert approved.status_code == 303, approved.text[-2000:]
            assert approved.headers["location"] == f"/practices/{change.group(2)}?done=approved"
            shown = client.get(approved.headers["location"]).text
            assert 'id="state">active<' in shown

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, rest[-2000:]
        assert "stopping" in rest
        assert not any(alive(pid) for pid in pids), "the demo left a process running"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            stop_process_group(proc, timeout=30)

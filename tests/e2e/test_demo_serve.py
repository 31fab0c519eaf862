"""``demo --serve`` leads somewhere: after the walkthrough the console answers at the printed URL, the
printed password signs in, approving the held change there works (the simulator still answers), and
Ctrl-C stops every process the demo started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.e2e.test_demo import ROOT, alive
from tests.utils.servers import free_port
from worker.processes import start_in_new_group, stop_process_group

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # the demo's walkthrough first


class Output:
    """The demo's stdout, read line by line by a thread of its own: a select on the pipe misses lines
    that Python's buffer already holds, so the wait would outlast a line that had arrived."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True)
        self.proc = proc
        self.thread.start()

    @property
    def text(self) -> str:
        return "".join(list(self.lines))

    def until(self, marker: str, timeout: float) -> str:
        """The output up to and including the line containing ``marker``."""
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            if time.monotonic() > deadline or (self.proc.poll() is not None and not self.thread.is_alive()):
                raise AssertionError(f"no {marker!r} from the demo (exit {self.proc.poll()}):\n{self.text[-3000:]}")
            time.sleep(0.2)
        return self.text

    def rest(self, timeout: float) -> str:
        """Everything, once the demo has exited and its pipe is drained."""
        self.proc.wait(timeout=timeout)
        self.thread.join(timeout=10)
        return self.text


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_demo_serve_prints_a_console_and_password_that_work_and_ctrl_c_stops_everything():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALO_") and k not in ("DATABASE_URL", "BROKER_URL")}
    port = free_port()
    proc = start_in_new_group([sys.executable, "-m", "worker.cli", "demo", "--serve", "--port", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        output = Output(proc)
        out = output.until("press Ctrl-C", timeout=420)
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
        rest = output.rest(timeout=120)
        assert proc.returncode == 0, rest[-2000:]
        assert "stopping" in rest
        assert not any(alive(pid) for pid in pids), "the demo left a process running"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            stop_process_group(proc, timeout=30)

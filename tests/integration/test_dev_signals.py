"""``python3 dev.py test|bench`` stopped by SIGTERM: dev.py passes the signal to its child and waits,
and the child stops every server it started (worker/stopping.py). Nothing outlives the command.

Each test runs the real ``dev.py`` as a CI runner or a supervisor would, watches every process that
appears under it (from /proc: PostgreSQL, Valkey, the simulator, Celery workers, in process groups of
their own), sends SIGTERM to dev.py alone once the servers are up, and then looks for survivors.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.utils.waiting import WaitTimedOut, wait_until
from tests.utils.workers import ROOT

pytestmark = pytest.mark.integration

# Set only by ``test_dev_py_test_on_a_stop_signal_...``, for the pytest it starts: the probe below then runs there.
PROBE = "DEV_SIGNALS_PROBE_READY"  # not HALO_*: the suite clears those


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[19]), fields[0]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Tree:
    """Every process seen under ``root`` so far, by (pid, start time): a pid reused later is not it."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[tuple[int, int], str] = {}
        self.survivors: dict[int, str] | None = None

    def look(self) -> None:
        parents: dict[int, int] = {}
        starts: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
                parents[int(entry.name)], starts[int(entry.name)] = stat[0], stat[1]
        known = {pid for pid, _ in self.seen} | {self.root}
        grew = True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if parent in known and pid not in known:
                    known.add(pid)
                    grew = True
        for pid in known:
            # Read again each look: a child seen between its fork and its exec still shows its
            # parent's command line (a Celery worker looking like the benchmark that starts it).
            if pid in starts and ((command := _cmdline(pid)) or (pid, starts[pid]) not in self.seen):
                self.seen[(pid, starts[pid])] = command

    def has(self, *words: str) -> bool:
        return all(any(word in command for command in self.seen.values()) for word in words)

    def alive(self) -> dict[int, str]:
        out = {}
        for (pid, start), command in self.seen.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == start and stat[2] != "Z":
                out[pid] = command
        return out


def _signal_once_up(cmd: list[str], *, up: tuple[str, ...], env: dict[str, str] | None = None,
                    sig: signal.Signals = signal.SIGTERM, settle: float = 1.0, timeout: float = 420) -> tuple[subprocess.Popen, Tree, str]:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"dev-signals-{os.getpid()}-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        # A session of its own: the signal reaches dev.py alone, as `kill PID` from a supervisor does.
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    tree = Tree(proc.pid)
    try:
        deadline = time.monotonic() + timeout
        while not tree.has(*up):
            assert proc.poll() is None, f"dev.py exited ({proc.returncode}) before its servers were up:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"servers not up: {sorted(tree.seen.values())}"
            tree.look()
            time.sleep(0.1)
        time.sleep(settle)  # past start-up (a clean-up then has something to stop), or 0: inside it
        tree.look()
        os.kill(proc.pid, sig)
        stop_by = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < stop_by:  # keep watching: what starts now is the command's too
            tree.look()
            time.sleep(0.1)
        assert proc.poll() is not None, f"dev.py did not exit after {sig.name}:\n{log.read_text()[-4000:]}"
        try:
            wait_until(lambda: not tree.alive(), timeout=60, interval=0.2, what="every process it started to exit")
        except WaitTimedOut:
            pass
        tree.survivors = tree.alive()  # what outlived dev.py, before the clean-up below kills it
        return proc, tree, log.read_text()
    finally:  # nothing outlives this test, whatever dev.py did: every process seen under it is killed
        tree.look()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in tree.alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.unlink(missing_ok=True)


@pytest.mark.timeout(900)
def test_dev_py_bench_on_sigterm_stops_the_benchmark_and_every_server_it_started():
    proc, tree, output = _signal_once_up([sys.executable, "dev.py", "bench", "recover", "--quick"],
                                          up=("postgres", "valkey", "simulator", "celery"))
    assert tree.survivors == {}, f"outlived dev.py: {tree.survivors}\n{output[-3000:]}"
    assert proc.returncode == 130, output[-3000:]
    assert "bench: interrupted" in output
    assert len(tree.seen) >= 5  # dev.py, the benchmark, and the servers it was stopped among


@pytest.mark.timeout(900)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_dev_py_test_on_a_stop_signal_tears_the_fixtures_down_and_stops_their_servers(tmp_path, sig):
    """SIGINT too: sent by a process (``kill -INT``) rather than the terminal, only dev.py gets it."""
    ready = tmp_path / "ready"
    proc, tree, output = _signal_once_up(
        [sys.executable, "dev.py", "test", f"{Path(__file__).relative_to(ROOT)}::test_probe_holding_servers", "-p",
         "no:randomly", "-q"],
        up=("postgres", "valkey"), env={PROBE: str(ready)}, sig=sig)
    assert ready.exists(), output[-3000:]  # the probe ran: its fixtures' servers were up when SIGTERM came
    assert tree.survivors == {}, f"outlived dev.py: {tree.survivors}\n{output[-3000:]}"
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert "KeyboardInterrupt" in output
    if sig != signal.SIGINT:
        assert f"stopped by {sig.name}" in output


@pytest.mark.skipif(PROBE not in os.environ, reason="run by test_dev_py_test_on_a_stop_signal_..., in a pytest of its own")
def test_probe_holding_servers(postgres_url, redis_url):
    """Holds a real PostgreSQL and Valkey (the session's fixtures) until the run is stopped."""
    Path(os.environ[PROBE]).write_text("up")
    while True:
        time.sleep(0.2)


@pytest.mark.timeout(900)
def test_dev_py_soak_on_sigterm_stops_the_soak_and_every_process_it_started():
    proc, tree, output = _signal_once_up([sys.executable, "dev.py", "soak", "--minutes", "2", "--practices", "4"],
                                         up=("postgres", "valkey", "simulator", "celery", "beat", "serve"))
    assert tree.survivors == {}, f"outlived dev.py: {tree.survivors}\n{output[-3000:]}"
    assert proc.returncode == 130, output[-3000:]
    assert "soak: interrupted; every process it started is stopped" in output


@pytest.mark.timeout(900)
def test_dev_py_reliability_on_sigterm_stops_its_servers_and_rewrites_nothing():
    document = ROOT / "docs" / "RELIABILITY.md"
    before = document.read_bytes()
    # The moment PostgreSQL appears, while it is still starting: a server half-started is stopped too.
    proc, tree, output = _signal_once_up([sys.executable, "dev.py", "reliability"], up=("bin/postgres -D",), settle=0)
    assert tree.survivors == {}, f"outlived dev.py: {tree.survivors}\n{output[-3000:]}"
    assert proc.returncode == 130, output[-3000:]
    assert "reliability: interrupted; RELIABILITY.md is not rewritten" in output
    assert document.read_bytes() == before


@pytest.mark.timeout(900)
def test_dev_py_demo_on_sigterm_stops_the_demo_and_everything_it_started():
    from tests.conftest import embedded_leftovers

    proc, tree, output = _signal_once_up([sys.executable, "dev.py", "demo"], up=("simulator", "celery"))
    # The embedded Valkey runs detached from the tree (it outlives a client by design, and stops once
    # nobody uses it): found by its data directory, the demo's.
    data = Path(re.search(r"\(data directory (\S+)\)", output).group(1))
    try:
        assert tree.survivors == {}, f"outlived dev.py: {tree.survivors}\n{output[-3000:]}"
        assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
        assert "stopped: stopping everything the demo started" in output
        wait_until(lambda: not embedded_leftovers(data), timeout=60, interval=0.2, what="the embedded Valkey to stop")
        assert not data.exists()  # the demo removed its data directory
    finally:
        for pid, _ in embedded_leftovers(data):  # nothing outlives this test, whatever the demo did
            os.kill(pid, signal.SIGKILL)

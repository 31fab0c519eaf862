"""The quick-start demo: the real thing on the embedded default, against a simulator.

Starts a Halo Cloud simulator, a Celery worker and beat as separate processes (the embedded
database and broker in a temporary data directory), onboards sample practices through the real
client, changes some of them in the simulator, sends a 403 storm through ``report_forbidden``,
waits for the worker, then walks the remaining verdicts with ``reconcile --now`` (a change held for a
pairing code and completed with ``practices pair``, a reinstall still initialising) and prints what
happened. Everything it starts, it stops.

With ``--serve`` it then keeps the simulator, the worker and beat running, starts ``serve`` (the API
and the operator console), adds an approver with a fresh password and prints where to sign in: the
held change is there to approve, against a simulator that still answers. Ctrl-C (or SIGTERM) stops
everything it started.
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from models import PracticeState, TicketReason, Verdict
from reconciler.adapters.store import SqlStore
from worker import admin, db, stopping
from worker.celery_app import follow_settings
from worker.config import get_settings
from worker.coordination import stop_embedded_server
from worker.hooks import report_forbidden
from worker.logging import configure_logging
from worker.processes import start_in_new_group, stop_process_group
from worker.simulator.control import SimulatorControl

KEY = "demo-subscription-key-4c1d9e"
REPORTS_PER_PRACTICE = 40

# (pms id, practice name, what happens to it in the simulator before the storm)
PRACTICES = [
    ("BP-1001", "Bondi Family Practice", "infrastructure"),
    ("BP-1002", "Carlton Medical Centre", "infrastructure"),
    ("BP-1003", "Fremantle Health", "infrastructure"),
    ("BP-1004", "Glenelg Clinic", "infrastructure"),
    ("BP-1005", "Hobart Road Surgery", "business"),
    ("BP-1006", "Ipswich GP", "not_found"),
    ("BP-1007", "Joondalup Medical", "ambiguous"),
    ("BP-1008", "Katoomba Doctors", "steady"),
    ("BP-1009", "Launceston Health Hub", "steady"),
    ("BP-1010", "Manly Vale Clinic", "later"),
    ("BP-1011", "Narrabri Medical", "pairing"),
    ("BP-1012", "Orange Grove Surgery", "initialising"),
]
# What the practice at BP-1011 generates in Bp Premier for its new server; the operator types it in.
PAIRING_CODE = "NARRABRI-7Q4K"
# Every manual row the walkthrough adds, not only the storm's: the table shows each verdict once.
STORMED = ("infrastructure", "business", "not_found", "ambiguous", "steady")

console = Console(highlight=False, width=None if sys.stdout.isatty() else 110)


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return start_in_new_group(cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        stop_process_group(proc, timeout=20)


def _start_simulator(env: dict[str, str], data: Path) -> tuple[subprocess.Popen, str]:
    proc = start_in_new_group(
        [sys.executable, "-m", "worker.cli", "simulator", "--port", "0", "--key", KEY],
        env=env, stdout=subprocess.PIPE, stderr=open(data / "simulator.log", "wb"), text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if "http://" not in line:
        _stop(proc)
        raise RuntimeError(f"the simulator did not start: {line!r}")
    return proc, line.strip().split()[-1]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=env, capture_output=True, text=True)


DEMO_OPERATOR = "demo"


def cli_command() -> str:
    """How to run the command line from any shell: the script beside this interpreter (a virtual
    environment's bin/, which need not be on PATH), else the interpreter with the module."""
    script = Path(sys.executable).parent / "halo-reconciler"
    return str(script) if script.exists() else f"{sys.executable} -m worker.cli"


def run_demo(keep: bool = False, serve: bool = False, port: int = 8000) -> int:
    data = Path(tempfile.mkdtemp(prefix="halo-reconciler-demo-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    env.update(HALO_RECONCILER_DATA_DIR=str(data), HALO_SUBSCRIPTION_KEY=KEY, HALO_RECONCILER_LOG_FORMAT="json",
               HALO_RECONCILER_HALO_BACKOFF_BASE_SECONDS="0.05")
    sim = None
    started: list[subprocess.Popen] = []  # the worker and beat, once the walkthrough starts them
    # SIGTERM or SIGHUP (``dev.py demo`` forwards them) stop it as Ctrl-C does: the finally below stops
    # what it started.
    previous = stopping.interrupt_on_terminate()
    try:
        console.print(f"[bold]halo-reconciler demo[/] (data directory {data})")
        sim, url = _start_simulator(env, data)
        env["HALO_BASE_URL"] = url
        os.environ.update(env)
        for name in ("DATABASE_URL", "BROKER_URL"):
            os.environ.pop(name, None)
        _reset(data)
        console.print(f"1. Halo Cloud simulator on {url}")
        code = _walkthrough(env, data, url, started)
        if serve and code == 0:
            return _serve_until_stopped(env, data, sim, url, started, port)
        return code
    except KeyboardInterrupt:
        if stopping.requested is None:  # Ctrl-C: the terminal's, as before
            raise
        console.print("\nstopped: stopping everything the demo started", markup=False)
        return 128 + stopping.requested
    finally:
        stopping.swallow_stops()  # the clean-up below is the stop: a signal now must not cut it short
        try:
            for proc in reversed(started):  # serve, beat, then the worker
                _stop(proc)
            _stop(sim)
            _shutdown_embedded()
            if keep:
                cli = cli_command()
                console.print(f"kept the data directory {data}", markup=False, soft_wrap=True)
                console.print(f"  its tickets in the operator console (read-only: the simulator has stopped; "
                              f"`demo --serve` keeps it running): export HALO_RECONCILER_DATA_DIR={data}; "
                              f"{cli} operators add {DEMO_OPERATOR} --role approver; {cli} serve  "
                              "(then http://127.0.0.1:8000/)", markup=False, soft_wrap=True)
            else:
                shutil.rmtree(data, ignore_errors=True)
        finally:
            stopping.restore(previous)


def _port(wanted: int) -> int:
    """``wanted`` when nothing listens there on loopback, else a free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            pass
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve_until_stopped(env: dict[str, str], data: Path, sim: subprocess.Popen, halo_url: str,
                         started: list[subprocess.Popen], wanted_port: int) -> int:
    """The console over what the demo left, with everything still running, until Ctrl-C."""
    password = secrets.token_urlsafe(12)
    admin.add_operator(DEMO_OPERATOR, "approver", password, by="demo", note="the demo's operator")
    port = _port(wanted_port)
    url = f"http://127.0.0.1:{port}"
    server = _start([sys.executable, "-m", "worker.cli", "serve", "--port", str(port)], env, data / "serve.log")
    started.append(server)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"serve did not start; see {data / 'serve.log'}")
        time.sleep(0.2)
    held = admin.practices_listing(state="held", limit=10).items
    console.print(f"10. the operator console (pid {server.pid}): {url}/", markup=False)
    console.print(f"    sign in as {DEMO_OPERATOR} with the password {password}", markup=False)
    for practice in held:
        console.print(f"    held for a person: {practice.practice_name}, {url}/practices/{practice.id}/change",
                      markup=False)
    console.print(f"    the simulator (pid {sim.pid}, {halo_url}), the worker and beat keep running, so approve "
                  "asks Halo again", markup=False)
    console.print(f"    logs in {data}; press Ctrl-C to stop everything", markup=False)

    try:
        while True:
            for proc in [sim, *started]:
                if proc.poll() is not None:
                    console.print(f"a process the demo started (pid {proc.pid}) exited with {proc.returncode}; "
                                  f"stopping (logs in {data})", markup=False)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP
        console.print("\nstopping the console, the worker, beat and the simulator", markup=False)
        return 0


def _reset(data: Path) -> None:

    get_settings.cache_clear()
    db.reset_engine()
    follow_settings()
    # This process's own log lines go beside the worker's, not over the demo's output.
    configure_logging(get_settings(), stream=open(data / "demo.log", "a"))


def _shutdown_embedded() -> None:
    try:
        stop_embedded_server()
    except OSError:  # the demo is ending; a server left behind is stopped with its directory
        pass


def _walkthrough(env: dict[str, str], data: Path, url: str, started: list[subprocess.Popen]) -> int:


    control = SimulatorControl(url)
    for pms_id, name, _ in PRACTICES:
        control.add_practice(pms_type="BestPractice", pms_id=pms_id, practice_name=name)

    sample = data / "practices.csv"
    with open(sample, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pms_type", "pms_id"])
        writer.writerows([["BestPractice", p] for p, _, c in PRACTICES if c != "later"] + [["BestPractice", "BP-9999"]])
    done = _cli(env, "practices", "import", str(sample))
    console.print("2. onboarded through the real client: `halo-reconciler practices import practices.csv`")
    for line in done.stdout.strip().splitlines():
        console.print(f"     {line}", markup=False)
    [later_pms_id] = [p for p, _, c in PRACTICES if c == "later"]
    added = _cli(env, "practices", "add", "--pms-type", "BestPractice", "--pms-id", later_pms_id)
    console.print(f"     {added.stdout.strip()}", markup=False)

    practices = {p.pms_id: p for p in admin.practices()}
    worker = _start([sys.executable, "-m", "celery", "-A", "worker", "worker", "--queues",
                     "events,reconcile,sweep,deliver", "--concurrency", "2", "--loglevel", "WARNING",
                     "--without-gossip", "--without-mingle"], env, data / "worker.log")
    started.append(worker)  # registered at once: the caller stops whatever was started, whatever fails next
    beat = _start([sys.executable, "-m", "worker.cli", "beat"], env, data / "beat.log")
    started.append(beat)
    console.print(f"3. Celery worker (pid {worker.pid}) and beat (pid {beat.pid}) on the embedded broker")

    for pms_id, name, change in PRACTICES:
        guid = practices[pms_id].halo_guid
        if change == "infrastructure":
            control.change_guid("BestPractice", pms_id)
        elif change == "business":
            new = control.change_guid("BestPractice", pms_id)
            control.rename(new, f"{name} (new owners)")
        elif change == "not_found":
            control.remove_practice("BestPractice", pms_id)
        elif change == "ambiguous":
            control.set_authoritative(guid, None)
            control.add_site("BestPractice", pms_id, authoritative=None, practice_name=name)
    console.print("4. changed in the simulator: 4 GUID moves, 1 new owner, 1 uninstalled, 1 with two databases")

    stormed = [p for p, _, change in PRACTICES if change in STORMED]
    reports = [practices[p].halo_guid for p in stormed] * REPORTS_PER_PRACTICE
    control.reset_counters()
    started = time.time()
    with ThreadPoolExecutor(8) as pool:
        taken = sum(pool.map(lambda guid: report_forbidden(guid, "Forbidden"), reports))
    console.print(f"5. a storm of {len(reports)} 403 reports through report_forbidden ({taken} taken) "
                  f"in {time.time() - started:.2f}s")

    ids = {practices[p].id for p in stormed}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with db.new_session() as session:
            seen = SqlStore(session).reconciled_practice_ids(list(ids))
        if seen >= ids:
            break
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited; see {data / 'worker.log'}")
        time.sleep(0.3)
    time.sleep(1.0)
    finds = control.call_count("find_sites")
    console.print(f"6. the worker settled them: {finds} Find sites calls for {len(reports)} reports "
                  f"({len(stormed)} practices)")
    stale = [report_forbidden(practices[p].halo_guid) for p, _, c in PRACTICES if c == "infrastructure"] * 10
    time.sleep(1.0)
    console.print(f"   {len(stale)} more reports naming replaced GUIDs cost "
                  f"{control.call_count('find_sites') - finds} calls")

    results = {}
    flap = practices["BP-1001"]
    control.set_status(flap.halo_guid, "active")
    control.set_authoritative(flap.halo_guid, True)
    results["BP-1001"] = admin.reconcile_now(flap.id)
    later = practices["BP-1010"].id
    for kind, fields in [("ip_not_allowed", {}), ("quota_exceeded", {}), ("unauthorized", {}),
                         ("server_error", {"status": 503})]:
        control.inject(kind, **fields)
        results[f"BP-1010 ({kind})"] = admin.reconcile_now(later)
        control.clear_faults()
    results["BP-1010"] = admin.reconcile_now(later)
    console.print("7. the rest of the table with `reconcile --now`: GUID flipping back, IP refused, quota, "
                  "bad key, Halo down, and a clean check")
    _walk_pairing(env, control, practices["BP-1011"])
    _walk_initialising(control, practices["BP-1012"])

    _print_table(practices, results)
    tickets = admin.list_tickets()
    console.print(f"\nopen tickets ({len(tickets)}):")
    for ticket in tickets:
        scope = f"practice {ticket.practice_id}" if ticket.practice_id else "integrator-wide"
        console.print(f"  #{ticket.id} {ticket.kind}/{ticket.reason} ({scope}, seen {ticket.occurrences}x)",
                      markup=False)
    control.close()
    return 0


def _walk_pairing(env: dict[str, str], control: SimulatorControl, practice) -> None:
    """A Best Practice server moved to a site we are not paired with: held for the practice's code."""
    new = control.change_guid("BestPractice", practice.pms_id, paired=False, pairing_code=PAIRING_CODE)
    held = admin.reconcile_now(practice.id)
    shown = admin.practice(practice.id)
    [ticket] = [t for t in admin.list_tickets() if t.practice_id == practice.id]
    if (shown.state, ticket.reason) != (PracticeState.HELD, TicketReason.PAIRING_REQUIRED):
        raise RuntimeError(f"practice {practice.id} was not held for pairing: {shown.state}, {ticket.reason}")
    console.print(f"8. {practice.practice_name} moved to a Best Practice site we are not paired with: "
                  f"{held.verdict}, {held.action}, ticket #{ticket.id} {ticket.kind}/{ticket.reason}")
    done = _cli(env, "practices", "pair", str(practice.id), "--pairing-code", PAIRING_CODE)
    shown = admin.practice(practice.id)
    [ticket] = [t for t in admin.list_tickets(status="resolved") if t.id == ticket.id]
    if done.returncode != 0 or shown.halo_guid != new:
        raise RuntimeError(f"practices pair did not switch practice {practice.id}: {done.stderr.strip()}")
    console.print(f"   `halo-reconciler practices pair {practice.id} --pairing-code {PAIRING_CODE}`: "
                  f"switched to {new[:8]}, ticket #{ticket.id} {ticket.status}", markup=False)


def _walk_initialising(control: SimulatorControl, practice) -> None:
    """A reinstall whose new Halo Link is still being set up: waited for, no ticket."""
    control.change_guid("BestPractice", practice.pms_id, status="initialising")
    result = admin.reconcile_now(practice.id)
    shown = admin.practice(practice.id)
    tickets = [t for t in admin.list_tickets() if t.practice_id == practice.id]
    console.print(f"9. {practice.practice_name} is reinstalling (its only new site is initialising): "
                  f"{result.verdict}, state {shown.state}, retried after {shown.next_attempt_at:%H:%M:%S}, "
                  f"{len(tickets)} tickets", markup=False)


def _print_table(practices, manual) -> None:


    names = {p.id: (p.pms_id, p.practice_name) for p in practices.values()}
    table = Table(title="reconciliations", box=None, pad_edge=False)
    for column in ("practice", "pms id", "trigger", "verdict", "action", "ticket", "GUID"):
        table.add_column(column, no_wrap=True)
    with db.new_session() as session:
        rows = SqlStore(session).all_reconciliations()
    for row in rows:
        pms_id, name = names.get(row.practice_id, ("?", "?"))
        change = f"{row.old_guid[:8]}->{row.new_guid[:8]}" if row.new_guid and row.new_guid != row.old_guid else ""
        table.add_row(name, pms_id, str(row.trigger), str(row.verdict), str(row.action),
                      f"#{row.ticket_id}" if row.ticket_id else "-", change)
    console.print(table)
    verdicts = sorted({str(r.verdict) for r in rows})
    console.print(f"verdicts shown: {', '.join(verdicts)} ({len(verdicts)} of {len(Verdict)})")

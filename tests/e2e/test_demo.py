"""The quick start's main job, as a new user runs it: every verdict shown, nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    done = subprocess.run([sys.executable, "-m", "worker.cli", "demo"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(10 of 10)" in done.stdout
    assert "9 Find sites calls for 360 reports" in done.stdout
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", done.stdout)]
    assert len(pids) == 2 and not any(alive(pid) for pid in pids), "the demo left its worker or beat running"

"""Beat sweeps with real processes: two beats, one worker, each stale practice re-resolved once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import select

from models import PmsType, Practice
from tests.integration.conftest import ROOT, start_workers, stop_workers, wait_until
from worker import admin, db

pytestmark = pytest.mark.integration


def test_two_beats_sweep_each_stale_practice_once(stack, tmp_path, monkeypatch):
    sim, env = stack
    env = {**env, "HALO_RECONCILER_SWEEP_INTERVAL_SECONDS": "2"}
    ids = []
    for i in range(8):
        sim.add_practice(pms_type=PmsType.ZEDMED, pms_id=f"Z{i}", practice_name=f"Zed {i}")
        ids.append(admin.onboard("Zedmed", f"Z{i}").id)
    long_ago = datetime.now(UTC) - timedelta(days=3)
    with db.new_session() as session:
        session.execute(update(Practice).where(Practice.id.in_(ids[:5])).values(last_verified_at=long_ago))
        session.commit()
    sim.reset_counters()

    workers = start_workers(env, tmp_path, count=1)
    beats = [subprocess.Popen([sys.executable, "-m", "worker.cli", "beat", "--schedule", str(tmp_path / f"beat{i}")],
                              cwd=ROOT, env={**os.environ, **env}, stdout=open(tmp_path / f"beat{i}.log", "wb"),
                              stderr=subprocess.STDOUT, start_new_session=True) for i in range(2)]
    try:
        def verified() -> bool:
            with db.new_session() as session:
                rows = session.exec(select(Practice).where(Practice.id.in_(ids[:5]))).all()
            return all(p.last_verified_at > long_ago + timedelta(days=1) for p in rows)

        assert wait_until(verified, timeout=60), "the stale practices were not swept"
        time.sleep(5)  # several more beat intervals: nothing is fresh-stale, nothing more to call
        assert sim.call_count("find_sites") == 5
        assert {key for (_, key) in sim.calls} == {f"Z{i}" for i in range(5)}
    finally:
        stop_workers(beats + workers)

"""Beat sweeps with real processes: two beats, one worker, each stale practice re-resolved once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import update
from sqlmodel import select

from models import PmsType, Practice
from reconciler.adapters.coordination import keys
from tests.utils.waiting import wait_until
from tests.utils.workers import start_beats, start_workers, stop_workers, wait_until_idle
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
    beats = start_beats(env, tmp_path, count=2)
    try:
        def verified() -> bool:
            with db.new_session() as session:
                rows = session.exec(select(Practice).where(Practice.id.in_(ids[:5]))).all()
            return all(p.last_verified_at > long_ago + timedelta(days=1) for p in rows)

        wait_until(verified, timeout=60, what="the stale practices being swept")
        # Two more sweeps, and what they queued run: nothing is fresh-stale, nothing more to call.
        client = redis.Redis.from_url(env["BROKER_URL"])
        for _ in range(2):
            finished = client.get(keys.last_sweep())
            wait_until(lambda last=finished: client.get(keys.last_sweep()) != last, timeout=30, what="another sweep")
        client.close()
        wait_until_idle(env["BROKER_URL"])
        assert sim.call_count("find_sites") == 5
        assert {key for (_, key) in sim.calls} == {f"Z{i}" for i in range(5)}
    finally:
        stop_workers(beats + workers)

"""The reliability suite: real Valkey, PostgreSQL, simulator over HTTP, Celery worker and beat processes,
and a fault in the middle. Each test also records what it observed (``observe``), which
``python3 dev.py reliability`` turns into docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import func, select

from models import PmsType
from tests.integration.conftest import ROOT, stack, start_workers, stop_workers, wait_until  # noqa: F401
from worker import admin, db

RECORD = "RELIABILITY_RECORD"  # not HALO_*: the suite clears those from every test's environment


@pytest.fixture
def observe(request):
    """``observe(fault=..., how=..., **figures)``: one row of docs/RELIABILITY.md (when recording)."""
    path = os.environ.get(RECORD)

    def record(**row: object) -> None:
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"test": request.node.nodeid, **row}, default=str) + "\n")

    return record


def start_beats(env: dict[str, str], tmp_path: Path, count: int = 1) -> list[subprocess.Popen]:
    return [
        subprocess.Popen([sys.executable, "-m", "worker.cli", "beat", "--schedule", str(tmp_path / f"beat{i}")],
                         cwd=ROOT, env={**os.environ, **env}, stdout=open(tmp_path / f"beat{i}.log", "wb"),
                         stderr=subprocess.STDOUT, start_new_session=True)
        for i in range(count)
    ]


def start_ready_workers(env: dict[str, str], tmp_path: Path, count: int = 1, *, name: str = "worker",
                        concurrency: int = 2, timeout: float = 60) -> list[subprocess.Popen]:
    """Workers at INFO, returned once each has logged that it is consuming."""
    procs = start_workers(env, tmp_path, count, name=name, concurrency=concurrency, loglevel="INFO")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(b" ready." in p.log.read_bytes() for p in procs):  # type: ignore[attr-defined]
            return procs
        time.sleep(0.1)
    stop_workers(procs)
    raise AssertionError("workers did not become ready")


def onboard_fleet(sim, pms_type: PmsType, pms_ids: list[str]) -> tuple[list[int], dict[int, str]]:
    """Each PMS ID a practice in the simulator, onboarded through the real client: ids, and GUID by id."""
    ids, guids = [], {}
    for pms_id in pms_ids:
        sim.add_practice(pms_type=pms_type, pms_id=pms_id, practice_name=f"Clinic {pms_id}")
        out = admin.onboard(str(pms_type), pms_id)
        ids.append(out.id)
        guids[out.id] = out.halo_guid
    return ids, guids


def rows(model, *where) -> list:
    with db.new_session() as session:
        return list(session.exec(select(model).where(*where)).all())


def count(model, *where) -> int:
    with db.new_session() as session:
        return session.exec(select(func.count()).select_from(model).where(*where)).one()

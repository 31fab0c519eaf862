"""The reliability suite: real Valkey, PostgreSQL, simulator over HTTP, Celery worker and beat processes,
and a fault in the middle. Each test also records what it observed (``observe``), which
``python3 dev.py reliability`` turns into docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os

import pytest
from sqlmodel import func, select

from models import PmsType
from tests.integration.conftest import stack  # noqa: F401  (the fixture, for this folder's tests)
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

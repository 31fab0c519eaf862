"""A fleet of practices for the benchmarks: in the simulator, in the database, in the GUID index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from models import GuidHistory, Practice
from reconciler.core.identifiers import normalise_identifiers


def seed_database(practices: list[tuple[str, str]], *, stale_every: int = 0, chunk: int = 5000) -> list[int]:
    """Insert practices (pms_id, guid) as onboarded; every ``stale_every``-th last verified long ago."""
    from worker import db

    now = datetime.now(UTC)
    long_ago = now - timedelta(days=3)
    ids: list[int] = []
    engine = db.get_engine()
    for start in range(0, len(practices), chunk):
        rows = []
        for offset, (pms_id, guid) in enumerate(practices[start:start + chunk]):
            index = start + offset
            name = f"Practice {pms_id.split('-')[-1]}"
            identifiers = {"practice_name": name}
            verified = long_ago if stale_every and index % stale_every == 0 else now
            rows.append({
                "pms_type": "BestPractice", "pms_id": pms_id, "halo_guid": guid, "practice_name": name,
                "identifiers": identifiers, "identifiers_normalised": normalise_identifiers(identifiers),
                "state": "active", "last_verified_at": verified, "backoff_attempts": 0, "created_at": now,
                "updated_at": now, "version": 1,
            })
        with engine.begin() as connection:
            inserted = connection.execute(insert(Practice).returning(Practice.id), rows).scalars().all()
            connection.execute(insert(GuidHistory), [
                {"practice_id": pid, "guid": row["halo_guid"], "valid_from": now, "reason": "onboarded"}
                for pid, row in zip(inserted, rows)
            ])
        ids += inserted
    return ids


def index_all(redis, ids: list[int], practices: list[tuple[str, str]]) -> None:
    from reconciler.adapters.coordination import keys

    pipe = redis.pipeline(transaction=False)
    for pid, (_, guid) in zip(ids, practices):
        pipe.hset(keys.guid_index(), guid, f"{pid}:current")
    pipe.execute()

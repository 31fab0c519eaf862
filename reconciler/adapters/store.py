"""Data access for practices, their GUID history, tickets and audit records.

Keyword-only functions over a session the caller owns. Nothing here commits: the caller (the act
step, onboarding, the CLI's unit of work) owns the one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from models import GuidHistory, Practice, PmsType
from reconciler.core.identifiers import normalise_identifiers
from reconciler.core.errors import UnknownPractice
from reconciler.core.guids import parse_guid


def get_practice(session: Session, *, practice_id: int) -> Practice:
    practice = session.get(Practice, practice_id)
    if practice is None:
        raise UnknownPractice(f"no practice with id {practice_id}")
    return practice


def find_practice_by_pms(session: Session, *, pms_type: PmsType, pms_id: str) -> Practice | None:
    return session.exec(
        select(Practice).where(Practice.pms_type == pms_type, Practice.pms_id == pms_id)
    ).first()


def find_practice_by_guid(session: Session, *, guid: str) -> Practice | None:
    """The practice whose current GUID is ``guid``, else the one that had it before."""
    guid = parse_guid(guid)
    current = session.exec(select(Practice).where(Practice.halo_guid == guid).order_by(Practice.id)).first()
    if current is not None:
        return current
    past = session.exec(
        select(GuidHistory.practice_id)
        .where(GuidHistory.guid == guid)
        .order_by(col(GuidHistory.valid_from).desc())
    ).first()
    return session.get(Practice, past) if past is not None else None


def count_practices(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Practice)).one()


def iter_practices(session: Session, *, batch: int = 500) -> Iterator[Practice]:
    """Every practice in id order, a page at a time (keyset pagination: constant memory)."""
    last_id = 0
    while True:
        rows = session.exec(
            select(Practice).where(Practice.id > last_id).order_by(Practice.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id  # type: ignore[assignment]
        session.expunge_all()


def add_practice(
    session: Session,
    *,
    pms_type: PmsType,
    pms_id: str,
    halo_guid: str,
    identifiers: dict[str, Any],
    now: datetime,
) -> Practice:
    """Record a newly onboarded practice and the first entry of its GUID history."""
    practice = Practice(
        pms_type=pms_type,
        pms_id=pms_id,
        halo_guid=parse_guid(halo_guid),
        practice_name=str(identifiers.get("practice_name") or ""),
        identifiers=dict(identifiers),
        identifiers_normalised=normalise_identifiers(identifiers),
        last_verified_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(practice)
    session.flush()
    session.add(GuidHistory(practice_id=practice.id, guid=practice.halo_guid, valid_from=now, reason="onboarded"))
    session.flush()
    return practice


def guid_history(session: Session, *, practice_id: int) -> Sequence[GuidHistory]:
    """Oldest first, the current GUID last."""
    return session.exec(
        select(GuidHistory)
        .where(GuidHistory.practice_id == practice_id)
        .order_by(col(GuidHistory.valid_from), col(GuidHistory.id))
    ).all()


def guid_histories(session: Session, *, practice_ids: Sequence[int]) -> dict[int, list[GuidHistory]]:
    """GUID histories of many practices in one query (for listings)."""
    result: dict[int, list[GuidHistory]] = {pid: [] for pid in practice_ids}
    if not practice_ids:
        return result
    rows = session.exec(
        select(GuidHistory)
        .where(col(GuidHistory.practice_id).in_(practice_ids))
        .order_by(col(GuidHistory.practice_id), col(GuidHistory.valid_from), col(GuidHistory.id))
    ).all()
    for row in rows:
        result[row.practice_id].append(row)
    return result

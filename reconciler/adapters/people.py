"""SQL for the people in the loop: the audit trail and the console's operators (practice search and
every list a page at a time: ``listings``).

The audit trail is two append-only lists read through their time indexes and merged newest first:
the worker's reconciliations (``actor`` null) and people's decisions. A reconciliation row that a
decision wrote (approve's switch) carries the person's name and is listed once, as the decision.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models import Operator, OperatorDecision, Reconciliation
from reconciler.core.errors import BadInput
from reconciler.core.vocabulary import WORKER_ACTOR


@dataclass(frozen=True)
class AuditEntry:
    """One line of ``audit --json`` (PRODUCT.md, "Who decided")."""

    at: datetime
    actor: str
    action: str
    practice_id: int | None
    ticket_id: int | None
    note: str | None
    detail: str | None

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "actor": self.actor, "action": self.action,
                "practice_id": self.practice_id, "ticket_id": self.ticket_id, "note": self.note,
                "detail": self.detail}


def _reconciliation_entry(row: Reconciliation) -> AuditEntry:
    said = f"{row.verdict}"
    if row.new_guid and row.new_guid != row.old_guid:
        said += f" ({row.old_guid} -> {row.new_guid})"
    if row.detail:
        said += f": {row.detail}"
    return AuditEntry(at=row.started_at, actor=WORKER_ACTOR, action=str(row.action), practice_id=row.practice_id,
                      ticket_id=row.ticket_id, note=None, detail=said[:2000])


def _decision_entry(row: OperatorDecision) -> AuditEntry:
    return AuditEntry(at=row.at, actor=row.actor, action=row.action, practice_id=row.practice_id,
                      ticket_id=row.ticket_id, note=row.note, detail=row.detail)


def _page(session: Session, query: Any, order: Sequence[Any], batch: int) -> Iterator[Any]:
    offset = 0
    while True:
        rows = session.exec(query.order_by(*order).offset(offset).limit(batch)).all()
        yield from rows
        if len(rows) < batch:
            return
        offset += batch


def audit_entries(session: Session, *, practice_id: int | None = None, limit: int | None = None,
                  batch: int = 500) -> list[AuditEntry]:
    """Every reconciliation and every decision (of one practice), newest first."""
    reconciliations = select(Reconciliation).where(col(Reconciliation.actor).is_(None))
    decisions = select(OperatorDecision)
    if practice_id is not None:
        reconciliations = reconciliations.where(Reconciliation.practice_id == practice_id)
        decisions = decisions.where(OperatorDecision.practice_id == practice_id)
    worker = (_reconciliation_entry(r) for r in _page(
        session, reconciliations, (col(Reconciliation.started_at).desc(), col(Reconciliation.id).desc()), batch))
    people = (_decision_entry(d) for d in _page(
        session, decisions, (col(OperatorDecision.at).desc(), col(OperatorDecision.id).desc()), batch))
    # At the same instant the person's decision comes first: it caused what the worker wrote then.
    merged = heapq.merge(people, worker, key=lambda e: e.at, reverse=True)
    out: list[AuditEntry] = []
    for entry in merged:
        if limit is not None and len(out) >= limit:
            break
        out.append(entry)
    return out


def last_reconciliation(session: Session, *, practice_id: int) -> Reconciliation | None:
    """The practice's latest reconciliation that asked Halo (what Halo answered and when)."""
    return session.exec(
        select(Reconciliation).where(Reconciliation.practice_id == practice_id, Reconciliation.halo_calls > 0)
        .order_by(col(Reconciliation.started_at).desc(), col(Reconciliation.id).desc()).limit(1)
    ).first()


# --- operators ------------------------------------------------------------------------------------


def operator(session: Session, *, name: str) -> Operator | None:
    return session.exec(select(Operator).where(Operator.name == name)).first()


def operators(session: Session) -> list[Operator]:
    return list(session.exec(select(Operator).order_by(col(Operator.name))).all())


def add_operator(session: Session, *, name: str, role: str, password_hash: str, now: datetime) -> Operator:
    row = Operator(name=name, role=role, password_hash=password_hash, created_at=now)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise BadInput(f"an operator named {name!r} exists already") from None
    return row


def remove_operator(session: Session, *, name: str) -> None:
    row = operator(session, name=name)
    if row is None:
        raise BadInput(f"no operator named {name!r}")
    session.delete(row)
    session.flush()

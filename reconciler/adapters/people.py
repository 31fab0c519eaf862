"""SQL for the people in the loop: the console's operators, their sessions and the sign-in throttle,
and the audit trail's entries (the trail itself is read a page at a time: ``listings``).

The audit trail is two append-only lists read through their time indexes and merged newest first:
the worker's reconciliations (``actor`` null) and people's decisions. A reconciliation row that a
decision wrote (approve's switch) carries the person's name and is listed once, as the decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models import (
    ConsoleSession,
    Operator,
    OperatorDecision,
    Reconciliation,
    SigninThrottle,
)
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
    end_sessions_of(session, name=name)
    session.delete(row)
    session.flush()


def disable_operator(session: Session, *, name: str, now: datetime) -> Operator:
    """The operator can no longer sign in, and every session they have ends now."""
    row = operator(session, name=name)
    if row is None:
        raise BadInput(f"no operator named {name!r}")
    row.disabled_at = row.disabled_at or now
    session.add(row)
    end_sessions_of(session, name=name)
    session.flush()
    return row


def enable_operator(session: Session, *, name: str) -> Operator:
    row = operator(session, name=name)
    if row is None:
        raise BadInput(f"no operator named {name!r}")
    row.disabled_at = None
    session.add(row)
    session.flush()
    return row


def set_role(session: Session, *, name: str, role: str) -> tuple[Operator, str]:
    """A new role, and the one it replaces (it counts from the next request: sessions read it each time)."""
    row = operator(session, name=name)
    if row is None:
        raise BadInput(f"no operator named {name!r}")
    before, row.role = row.role, role
    session.add(row)
    session.flush()
    return row, before


def set_password(session: Session, *, name: str, password_hash: str) -> Operator:
    """A new password (an admin's reset): every session signed in with the old one ends."""
    row = operator(session, name=name)
    if row is None:
        raise BadInput(f"no operator named {name!r}")
    row.password_hash = password_hash
    session.add(row)
    end_sessions_of(session, name=name)
    session.flush()
    return row


# --- console sessions: the cookie holds a random token, the database its SHA-256 --------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(session: Session, *, token: str, name: str, csrf: str, now: datetime,
                   lifetime: timedelta) -> None:
    session.add(ConsoleSession(token_hash=token_hash(token), operator_name=name, csrf=csrf, created_at=now,
                               expires_at=now + lifetime))
    # Expired rows of this operator go as they sign in again: the table stays the size of who is signed in.
    session.execute(delete(ConsoleSession).where(ConsoleSession.operator_name == name,
                                                 col(ConsoleSession.expires_at) <= now))
    session.flush()


def session_operator(session: Session, *, token: str, now: datetime) -> tuple[Operator, str] | None:
    """The enabled operator a live session token belongs to, and its CSRF token; None otherwise."""
    row = session.exec(
        select(Operator, ConsoleSession.csrf)
        .join(ConsoleSession, ConsoleSession.operator_name == Operator.name)
        .where(ConsoleSession.token_hash == token_hash(token), col(ConsoleSession.expires_at) > now,
               col(Operator.disabled_at).is_(None))
    ).first()
    return (row[0], row[1]) if row is not None else None


def end_session(session: Session, *, token: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token)))


def end_sessions_of(session: Session, *, name: str) -> int:
    return session.execute(delete(ConsoleSession).where(ConsoleSession.operator_name == name)).rowcount or 0


# --- the sign-in throttle, shared by every `serve` process and kept across restarts ----------------


def name_key(name: str) -> str:
    """The throttle's key for an operator name (any case: ``Alice`` and ``alice`` are counted together)."""
    return f"name:{name.casefold()}"[:200]


def address_key(address: str) -> str:
    return f"addr:{address}"[:200]


def throttle_wait(session: Session, *, keys: Sequence[str], now: datetime) -> float:
    """Seconds until every key's cool-down has passed (0: a sign-in may be tried now)."""
    locks = session.exec(select(SigninThrottle.locked_until).where(col(SigninThrottle.key).in_(list(keys)),
                                                                  col(SigninThrottle.locked_until) > now)).all()
    return max(((until - now).total_seconds() for until in locks if until is not None), default=0.0)


def throttle_failed(session: Session, *, key: str, limit: int, window: timedelta, now: datetime) -> bool:
    """Count one failure under ``key``; at ``limit`` failures within ``window`` the key is locked for
    ``window`` (the cool-down) and its count starts again. True when this failure locked it."""
    query = select(SigninThrottle).where(SigninThrottle.key == key)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = session.exec(query).first()
    if row is None:
        try:
            with session.begin_nested():
                row = SigninThrottle(key=key, failures=0, window_started_at=now)
                session.add(row)
                session.flush()
        except IntegrityError:  # another process counted the first failure at the same moment
            row = session.exec(query).one()
    if row.window_started_at <= now - window:
        row.failures, row.window_started_at = 0, now
    row.failures += 1
    locked = row.failures >= limit
    if locked:
        row.locked_until, row.failures, row.window_started_at = now + window, 0, now
    session.add(row)
    session.flush()
    return locked


def throttle_clear(session: Session, *, key: str) -> bool:
    """Forget a key's failures and lift its lock (a right password for a name; an admin's unlock)."""
    return bool(session.execute(delete(SigninThrottle).where(SigninThrottle.key == key)).rowcount)

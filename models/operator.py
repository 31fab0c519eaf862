"""People who may sign in to the operator console, with a role and an argon2 password hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class Operator(SQLModel, table=True):
    __tablename__ = "operators"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(128), nullable=False, unique=True)
    role: str = Field(sa_type=String(16), nullable=False)  # viewer | approver | admin (OperatorRole)
    # argon2id, in the PHC string format argon2-cffi writes (algorithm, parameters, salt, hash).
    password_hash: str = Field(sa_type=String(256), nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Set by an admin: the operator cannot sign in, and every session they had ended with it.
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser: the cookie holds a random token, this row its SHA-256 (a stolen database
    gives no usable cookie). Signing out, disabling the operator or resetting the password deletes
    the rows, so a replayed cookie finds nothing."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_operator", "operator_name"),)

    token_hash: str = Field(sa_type=String(64), primary_key=True)
    operator_name: str = Field(sa_type=String(128), nullable=False)
    csrf: str = Field(sa_type=String(64), nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class SigninThrottle(SQLModel, table=True):
    """Failed sign-ins under one key (``name:<operator>`` or ``addr:<address>``), shared by every
    ``serve`` process and kept across restarts: the count in the current window, and how long the
    key is locked once the count reached its limit."""

    __tablename__ = "signin_throttle"

    key: str = Field(sa_type=String(200), primary_key=True)
    failures: int = Field(default=0, nullable=False)
    window_started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OperatorOut(SQLModel):
    """An operator as ``operators list --json`` prints it: never the hash."""

    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None = None

    def to_json(self) -> dict:
        return self.model_dump(mode="json")

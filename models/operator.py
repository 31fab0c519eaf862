"""People who may sign in to the operator console, with a role and an argon2 password hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field, SQLModel

from models.types import UTCDateTime, utcnow


class Operator(SQLModel, table=True):
    __tablename__ = "operators"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(128), nullable=False, unique=True)
    role: str = Field(sa_type=String(16), nullable=False)  # viewer | approver (OperatorRole)
    # argon2id, in the PHC string format argon2-cffi writes (algorithm, parameters, salt, hash).
    password_hash: str = Field(sa_type=String(256), nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class OperatorOut(SQLModel):
    """An operator as ``operators list --json`` prints it: never the hash."""

    name: str
    role: str
    created_at: datetime

    def to_json(self) -> dict:
        return self.model_dump(mode="json")

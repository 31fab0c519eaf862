"""A practice we route to: its PMS identity, the GUID in use, and what we last learnt about it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from reconciler.core.vocabulary import PmsType, PracticeState, Verdict
from models.types import UTCDateTime, utcnow


# Trigram indexes for the practice search, made by migration 0009 on PostgreSQL where pg_trgm can be
# had, and not declared below (an expression GIN index is PostgreSQL's alone): autogenerate skips them.
SEARCH_INDEXES = ("ix_practices_name_trgm", "ix_practices_pms_id_trgm")


def is_compared(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's ``include_object``: every schema object but the search's PostgreSQL-only indexes."""
    return not (type_ == "index" and name in SEARCH_INDEXES)


class Practice(SQLModel, table=True):
    __tablename__ = "practices"
    __table_args__ = (
        UniqueConstraint("pms_type", "pms_id", name="uq_practices_pms"),
        # 403 reports name a GUID: find its practice in one index probe.
        Index("ix_practices_halo_guid", "halo_guid"),
        # The sweep pages "not verified since T" in (last_verified_at, id) order.
        Index("ix_practices_last_verified_at_id", "last_verified_at", "id"),
        # Due retries: "next_attempt_at <= now".
        Index("ix_practices_next_attempt_at", "next_attempt_at"),
        # The practice browser: a state's practices a page at a time, and the counts by state.
        Index("ix_practices_state_id", "state", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    pms_type: PmsType = Field(sa_type=String(16), nullable=False)
    pms_id: str = Field(sa_type=String(128), nullable=False)
    halo_guid: str = Field(sa_type=String(36), nullable=False)
    practice_name: str = Field(sa_type=String(512), nullable=False)
    # Secondary identifiers as recorded (raw) and as compared (normalised case and white space).
    identifiers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    identifiers_normalised: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: PracticeState = Field(default=PracticeState.ACTIVE, sa_type=String(16), nullable=False)
    # A change waiting for a person (state held).
    proposed_guid: str | None = Field(default=None, sa_type=String(36))
    proposed_identifiers: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The change a person rejected: the same proposal does not ticket again until something changes.
    rejected_fingerprint: str | None = Field(default=None, sa_type=String(128))
    last_verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The availability Halo last reported for the GUID in use (online, offline, unreachable; None: not
    # reported or a value we do not know). An offline site is still the right GUID.
    availability: str | None = Field(default=None, sa_type=String(16))
    last_verdict: Verdict | None = Field(default=None, sa_type=String(32))
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    backoff_attempts: int = Field(default=0, nullable=False)
    # The first of the practice's consecutive halo_unavailable verdicts (None once Halo answers).
    unavailable_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Optimistic concurrency: every write is "UPDATE ... WHERE id = ? AND version = ?".
    version: int = Field(default=1, nullable=False)


class GuidPeriod(SQLModel):
    """One GUID a practice had, as ``--json`` prints it: ``{guid, from, until, reason}``."""

    guid: str
    from_: datetime = Field(alias="from", schema_extra={"serialization_alias": "from"})
    until: datetime | None
    reason: str


class PracticeOut(SQLModel):
    """A practice as the command line prints it (PRODUCT.md, "A practice")."""

    id: int
    pms_type: PmsType
    pms_id: str
    halo_guid: str
    practice_name: str
    identifiers: dict[str, Any]
    state: PracticeState
    proposed_guid: str | None
    availability: str | None = None
    last_verified_at: datetime | None
    last_verdict: Verdict | None
    next_attempt_at: datetime | None
    guid_history: list[GuidPeriod]

    @classmethod
    def from_rows(cls, practice: Practice, history: list[Any]) -> "PracticeOut":
        return cls(
            id=practice.id,
            pms_type=practice.pms_type,
            pms_id=practice.pms_id,
            halo_guid=practice.halo_guid,
            practice_name=practice.practice_name,
            identifiers=practice.identifiers,
            state=practice.state,
            proposed_guid=practice.proposed_guid,
            availability=practice.availability,
            last_verified_at=practice.last_verified_at,
            last_verdict=practice.last_verdict,
            next_attempt_at=practice.next_attempt_at,
            guid_history=[
                GuidPeriod.model_validate(
                    {"guid": h.guid, "from": h.valid_from, "until": h.valid_until, "reason": h.reason}
                )
                for h in history
            ],
        )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

"""Halo Cloud answers, parsed once into typed values (from the published OpenAPI document).

Strict about what we act upon, lenient about the rest, so a new value from Halo never stops the
worker but a garbled answer never switches a GUID:

- **strict**: the GUID (``id``), ``status``, ``authoritative`` (``true``/``false``, or absent: None,
  which is not False) and the identifiers we compare (``practiceMetadata.practiceName``,
  ``practiceMetadata.practiceManagementSiteId`` and their deprecated top-level fallbacks ``name`` and
  ``practiceManagementSiteId``). An invalid one rejects the whole answer; the client raises
  ``HaloBadResponse``. A Find sites answer is rejected whole rather than with the bad site left out:
  leaving out a garbled authoritative site could make a sibling look like the single candidate.
- **lenient** (:data:`Lenient`): ``availability``, ``pmsType``, ``haloLinkVersion``, ``enrichedAt``,
  ``practiceManagementVersion``. A value outside the document (``availability: "unknown"``, a
  malformed date) is recorded as unknown, None, and the answer still parses. ``availability`` None
  therefore means "absent or not a value we know"; the practice JSON prints it as null.
- **ignored**: every other property, documented (``catalogue``, ``createdAt``, timestamps) or new.

Every string Halo controls is **bounded** here, at parse time (:data:`HaloText`, ``HALO_TEXT_MAX``
characters): a 2,000,000-character ``practiceName`` must not become a ticket's ``detail``, an audit row
and every webhook that carries them. A longer value is cut, never refused: the site still parses, and
the same cut applies to what was recorded and to what is compared, so a comparison stays honest up to
the bound. An immediate query's rows are bounded the same way (``QUERY_MAX_ROWS``, ``QUERY_MAX_FIELDS``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr, ValidationError, ValidatorFunctionWrapHandler,
    WrapValidator, field_validator,
)

from reconciler.core.vocabulary import Availability, PmsType, SiteStatus
from reconciler.core.guids import parse_guid

T = TypeVar("T")


def _unknown_as_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        return None


def _text_only(value: Any) -> Any:
    """A date-time is a string in the document: a number would be read as seconds since 1970."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


# A property we show but never act on: a value we cannot read is recorded as unknown (None).
Lenient = Annotated[T | None, WrapValidator(_unknown_as_none)]

# The longest Halo string kept: a practice name, a PMS ID, a version, a query's value or column name.
HALO_TEXT_MAX = 512
QUERY_MAX_ROWS = 100
QUERY_MAX_FIELDS = 64


def bound_text(value: str) -> str:
    """A Halo string cut to ``HALO_TEXT_MAX`` characters."""
    return value[:HALO_TEXT_MAX]


HaloText = Annotated[StrictStr, AfterValidator(bound_text)]


def bound_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An immediate query's rows with every string (names and values) bounded, and at most
    ``QUERY_MAX_ROWS`` rows of ``QUERY_MAX_FIELDS`` fields."""
    def value(v: Any) -> Any:
        return bound_text(v) if isinstance(v, str) else v if isinstance(v, int | float | bool) or v is None else \
            bound_text(str(v))
    return [{bound_text(str(k)): value(v) for k, v in list(row.items())[:QUERY_MAX_FIELDS]}
            for row in rows[:QUERY_MAX_ROWS]]


class _HaloModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class PracticeMetadata(_HaloModel):
    practice_name: HaloText | None = Field(default=None, alias="practiceName")
    practice_management_site_id: HaloText | None = Field(default=None, alias="practiceManagementSiteId")
    pms_type: Lenient[PmsType] = Field(default=None, alias="pmsType")
    practice_management_version: Lenient[HaloText] = Field(default=None, alias="practiceManagementVersion")


class Site(_HaloModel):
    """One site as Find sites, Get site status and Pair with a site return it."""

    # Strict: what selection, comparison and switching act upon.
    id: str
    status: SiteStatus
    # Deprecated in the spec but still returned; None means Halo did not say (not the same as False).
    authoritative: StrictBool | None = None
    practice_metadata: PracticeMetadata | None = Field(default=None, alias="practiceMetadata")
    name: HaloText | None = None  # deprecated; the practice name when practiceMetadata has none
    practice_management_site_id: HaloText | None = Field(default=None, alias="practiceManagementSiteId")
    # Lenient: shown and recorded, never acted upon.
    availability: Lenient[Availability] = None
    pms_type: Lenient[PmsType] = Field(default=None, alias="pmsType")
    halo_link_version: Lenient[HaloText] = Field(default=None, alias="haloLinkVersion")
    enriched_at: Lenient[Annotated[datetime, BeforeValidator(_text_only)]] = Field(default=None, alias="enrichedAt")

    @field_validator("id", mode="before")
    @classmethod
    def _canonical_guid(cls, value: Any) -> str:
        return parse_guid(value)

    @property
    def practice_name(self) -> str | None:
        """The practice's name: ``practiceMetadata.practiceName``, else the deprecated ``name``."""
        if self.practice_metadata and self.practice_metadata.practice_name is not None:
            return self.practice_metadata.practice_name
        return self.name

    @property
    def pms_id(self) -> str | None:
        if self.practice_metadata and self.practice_metadata.practice_management_site_id is not None:
            return self.practice_metadata.practice_management_site_id
        return self.practice_management_site_id

    @property
    def is_active(self) -> bool:
        return self.status is SiteStatus.ACTIVE

    def summary(self) -> dict[str, Any]:
        """What an audit record keeps of this site: enough to explain a verdict, nothing secret."""
        return {
            "id": self.id,
            "status": str(self.status),
            "availability": str(self.availability) if self.availability else None,
            "authoritative": self.authoritative,
            "practice_name": self.practice_name,
        }


class FindSitesResult(_HaloModel):
    sites: list[Site]


class QueryResult(_HaloModel):
    """The result of an immediate query: rows decoded from the base64 ``data``."""

    query_id: HaloText
    rows: Annotated[list[dict[str, Any]], AfterValidator(bound_rows)]

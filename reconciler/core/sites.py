"""Halo Cloud answers, parsed once into typed values (from the published OpenAPI document).

Parsing is strict about what we act upon (``id`` must be a GUID, ``status`` one of the documented
values) and tolerant of what we don't (unknown extra properties are ignored, optional ones may be
missing), so a new field from Halo never stops the worker but a garbled answer never switches a GUID.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reconciler.core.vocabulary import Availability, PmsType, SiteStatus
from reconciler.core.guids import parse_guid


class _HaloModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class PracticeMetadata(_HaloModel):
    pms_type: PmsType | None = Field(default=None, alias="pmsType")
    practice_name: str | None = Field(default=None, alias="practiceName")
    practice_management_site_id: str | None = Field(default=None, alias="practiceManagementSiteId")
    practice_management_version: str | None = Field(default=None, alias="practiceManagementVersion")


class Site(_HaloModel):
    """One site as Find sites / Get site status return it."""

    id: str
    status: SiteStatus
    availability: Availability | None = None
    pms_type: PmsType | None = Field(default=None, alias="pmsType")
    # Deprecated in the spec but still returned; None means Halo did not say.
    authoritative: bool | None = None
    practice_metadata: PracticeMetadata | None = Field(default=None, alias="practiceMetadata")
    name: str | None = None
    practice_management_site_id: str | None = Field(default=None, alias="practiceManagementSiteId")
    halo_link_version: str | None = Field(default=None, alias="haloLinkVersion")
    enriched_at: datetime | None = Field(default=None, alias="enrichedAt")

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

    query_id: str
    rows: list[dict[str, Any]]

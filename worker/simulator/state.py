"""What the simulated Halo Cloud holds: sites, each carrying a PMS ID, grouped by practice."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.core.vocabulary import Availability, PmsType, SiteStatus


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SiteRecord:
    guid: str
    pms_type: PmsType
    pms_id: str
    practice_name: str
    status: SiteStatus = SiteStatus.ACTIVE
    availability: Availability = Availability.ONLINE
    authoritative: bool | None = True  # None: the deprecated property is left out of answers
    query_rows: list[dict[str, Any]] | None = None
    pms_version: str = "3.4.1"
    halo_link_version: str = "26.619.10213"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def rows(self) -> list[dict[str, Any]]:
        return self.query_rows if self.query_rows is not None else [{"practice_name": self.practice_name}]

    def to_json(self, *, availability: Availability | None = None) -> dict[str, Any]:
        """The site as Find sites and Get site status return it: every property the document lists."""
        now = _stamp(datetime.now(UTC))
        site: dict[str, Any] = {
            "id": self.guid,
            "pmsType": str(self.pms_type),
            "availability": str(availability or self.availability),
            "status": str(self.status),
            "haloLinkVersion": self.halo_link_version,
            "enrichedAt": _stamp(self.created_at),
            "catalogue": [{"name": "Default", "isDefault": True}],
            "practiceMetadata": {
                "pmsType": str(self.pms_type),
                "practiceName": self.practice_name,
                "practiceManagementSiteId": self.pms_id,
                "practiceManagementVersion": self.pms_version,
            },
            "name": self.practice_name,
            "practiceManagementSiteId": self.pms_id,
            "practiceManagementName": self.pms_type.query_name,
            "practiceManagementVersion": self.pms_version,
            "createdAt": _stamp(self.created_at),
            "clientTimestampUTC": now,
            "heartbeatTimestampUTC": now,
        }
        if self.authoritative is not None:
            site["authoritative"] = self.authoritative
        return site

"""What the simulated Halo Cloud holds: sites, each carrying a PMS ID, grouped by practice.

A site is paired with the (one) simulated integrator or not; a Best Practice site carries the
pairing code the practice would generate in Bp Premier.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.core.vocabulary import Availability, PmsType, SiteStatus


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_pairing_code() -> str:
    """A code of the shape the document's example shows (``ABC123``)."""
    return secrets.token_hex(3).upper()


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
    paired: bool = True
    pairing_code: str | None = None  # Best Practice only; None: no code would pair it
    # Properties served as given, over the computed ones (odd values for lenient-parsing tests);
    # a value of None leaves the property out.
    overrides: dict[str, Any] = field(default_factory=dict)
    pms_version: str = "3.4.1"
    halo_link_version: str = "26.619.10213"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def rows(self) -> list[dict[str, Any]]:
        return self.query_rows if self.query_rows is not None else [{"practice_name": self.practice_name}]

    def to_json(self, *, availability: Availability | None = None) -> dict[str, Any]:
        """The site as Find sites, Get site status and Pair with a site return it: every property the
        document lists."""
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
        for name, value in self.overrides.items():
            if value is None:
                site.pop(name, None)
            else:
                site[name] = value
        return site

    def control_json(self) -> dict[str, Any]:
        """What the control API tells about a site beyond what Halo serves: pairing and overrides."""
        return {"guid": self.guid, "pms_type": str(self.pms_type), "pms_id": self.pms_id,
                "practice_name": self.practice_name, "status": str(self.status),
                "availability": str(self.availability), "authoritative": self.authoritative,
                "paired": self.paired, "pairing_code": self.pairing_code, "overrides": dict(self.overrides)}

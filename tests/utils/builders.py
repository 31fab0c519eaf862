"""Builders for Halo answers and recorded practices in tests."""

from __future__ import annotations

import uuid
from typing import Any

from reconciler.core.classify import Recorded
from reconciler.core.identifiers import normalise_identifiers
from reconciler.core.sites import Site

_UNSET: Any = object()


def site(guid: str | None = None, *, name: str = "Halo Clinic South", status: str = "active",
         authoritative: bool | None = True) -> Site:
    document: dict[str, Any] = {
        "id": guid or str(uuid.uuid4()),
        "status": status,
        "pmsType": "BestPractice",
        "practiceMetadata": {"practiceName": name, "practiceManagementSiteId": "12345", "pmsType": "BestPractice"},
    }
    if authoritative is not None:
        document["authoritative"] = authoritative
    return Site.model_validate(document)


def recorded(guid: str, name: str = "Halo Clinic South", **extra: Any) -> Recorded:
    return Recorded(practice_id=1, halo_guid=guid,
                    identifiers_normalised=normalise_identifiers({"practice_name": name, **extra}))

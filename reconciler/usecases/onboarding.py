"""Onboarding: trade a PMS ID for its authoritative GUID and record the practice's baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from models import Practice, PmsType
from reconciler.core.errors import AlreadyOnboarded, BadInput, Conflict, OnboardingRefused
from reconciler.core.identifiers import identifiers_from_site
from reconciler.core.selection import select_site
from reconciler.usecases.ports import Halo, Store

log = structlog.get_logger()

MAX_PMS_ID_LENGTH = 128


@dataclass(frozen=True)
class OnboardRequest:
    pms_type: PmsType
    pms_id: str


def parse_request(pms_type: str, pms_id: str) -> OnboardRequest:
    """Validate what a person typed or a CSV row held; raise :class:`BadInput` naming the problem."""
    try:
        kind = PmsType(pms_type.strip())
    except ValueError:
        names = ", ".join(t.value for t in PmsType)
        raise BadInput(f"unknown PMS type {pms_type.strip()[:40]!r}: expected one of {names}") from None
    pms_id = pms_id.strip()
    if not pms_id:
        raise BadInput("the PMS ID is empty")
    if len(pms_id) > MAX_PMS_ID_LENGTH or not pms_id.isprintable():
        raise BadInput(f"the PMS ID {pms_id[:40]!r} is not a PMS ID (printable, at most {MAX_PMS_ID_LENGTH} characters)")
    return OnboardRequest(kind, pms_id)


def extra_identifiers(client: Halo, guid: str, sql: str | None) -> Mapping[str, Any] | None:
    """The first row of the integrator's identifier query, when one is configured."""
    if not sql:
        return None
    result = client.immediate_query(guid, sql)
    return result.rows[0] if result.rows else {}


def onboard_practice(
    store: Store,
    client: Halo,
    request: OnboardRequest,
    *,
    now: datetime,
    identifier_query: str | None = None,
) -> Practice:
    """Resolve the PMS ID at Halo, pick the authoritative active site, record the practice.

    Refuses an already onboarded practice before spending a Halo call. Halo errors propagate as
    their own types (``HaloUnauthorized`` and friends) for the caller to report.
    """
    if store.practice_by_pms(request.pms_type, request.pms_id) is not None:
        raise AlreadyOnboarded(f"{request.pms_type} practice {request.pms_id} is already onboarded")
    sites = client.find_sites(request.pms_type, request.pms_id)
    selection = select_site(sites)
    if selection.site is None:
        raise OnboardingRefused(
            f"Halo has no single authoritative active site for {request.pms_type} PMS ID {request.pms_id} "
            f"({selection.outcome}: {len(sites)} site(s) carry it, {len(selection.candidates)} active)"
        )
    site = selection.site
    identifiers = identifiers_from_site(site, extra_identifiers(client, site.id, identifier_query))
    try:
        practice = store.add_practice(
            pms_type=request.pms_type, pms_id=request.pms_id, halo_guid=site.id, identifiers=identifiers, now=now,
        )
    except Conflict:
        # Another process onboarded it between our check and our insert.
        raise AlreadyOnboarded(f"{request.pms_type} practice {request.pms_id} is already onboarded") from None
    log.info("practice_onboarded", practice_id=practice.id, pms_type=str(request.pms_type), halo_guid=site.id)
    return practice

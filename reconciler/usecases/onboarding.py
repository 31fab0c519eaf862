"""Onboarding: trade a PMS ID for its authoritative GUID, pair with it, and record the practice's baseline.

PRODUCT.md, "Pairing at onboarding": Find sites picks the authoritative active site; then Pair with
a site (``pairingCode`` only when given) and the site Halo returned is recorded. A Best Practice
site without a code is recorded without pairing only when Get site status shows it already paired
(it answers 200); otherwise the practice is refused, naming ``--pairing-code``, and nothing is
recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models import Practice, PmsType
from reconciler import logs
from reconciler.core.classify import is_unpaired_answer
from reconciler.core.errors import AlreadyOnboarded, BadInput, Conflict, OnboardingRefused
from reconciler.core.halo_errors import HaloError
from reconciler.core.identifiers import identifiers_from_site
from reconciler.core.selection import select_site
from reconciler.core.sites import Site
from reconciler.usecases.ports import Halo, Store

log = logs.get_logger()

MAX_PMS_ID_LENGTH = 128
MAX_PAIRING_CODE_LENGTH = 64


class PairingCodeRequired(BadInput):
    """A Best Practice site that is not paired with us, and no pairing code was given."""


@dataclass(frozen=True)
class OnboardRequest:
    pms_type: PmsType
    pms_id: str
    pairing_code: str | None = None


def parse_pairing_code(code: str | None) -> str | None:
    """A pairing code as typed (None or blank: none given); raise :class:`BadInput` if it is not one."""
    if code is None or not code.strip():
        return None
    code = code.strip()
    if len(code) > MAX_PAIRING_CODE_LENGTH or not code.isprintable():
        raise BadInput(f"the pairing code is not a pairing code (printable, at most {MAX_PAIRING_CODE_LENGTH} characters)")
    return code


def parse_request(pms_type: str, pms_id: str, pairing_code: str | None = None) -> OnboardRequest:
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
    return OnboardRequest(kind, pms_id, parse_pairing_code(pairing_code))


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
    if selection.outcome != "selected" or selection.site is None:
        raise OnboardingRefused(
            f"Halo has no single authoritative active site for {request.pms_type} PMS ID {request.pms_id} "
            f"({selection.outcome}: {len(sites)} site(s) carry it, {len(selection.candidates)} active)"
        )
    site = pair(client, request, selection.site)
    identifiers = identifiers_from_site(site, extra_identifiers(client, site.id, identifier_query))
    try:
        practice = store.add_practice(
            pms_type=request.pms_type, pms_id=request.pms_id, halo_guid=site.id, identifiers=identifiers, now=now,
            availability=str(site.availability) if site.availability else None,
        )
    except Conflict:
        # Another process onboarded it between our check and our insert.
        raise AlreadyOnboarded(f"{request.pms_type} practice {request.pms_id} is already onboarded") from None
    log.info("practice_onboarded", practice_id=practice.id, pms_type=str(request.pms_type), halo_guid=site.id)
    return practice


def pair(client: Halo, request: OnboardRequest, found: Site) -> Site:
    """Pair with the site Find sites chose and return the site Halo returned (see the module's text)."""
    if request.pms_type is PmsType.BEST_PRACTICE and request.pairing_code is None:
        try:
            return client.get_site(found.id)  # already paired: it answers
        except HaloError as exc:
            if not is_unpaired_answer(exc):
                raise
        raise PairingCodeRequired(
            f"Best Practice site {found.id} for PMS ID {request.pms_id} is not paired with us: ask the practice "
            "for a pairing code (generated in Bp Premier) and give it with --pairing-code CODE"
        )
    site = client.pair_site(request.pms_type, request.pms_id, request.pairing_code)
    log.info("site_paired", pms_type=str(request.pms_type), halo_guid=site.id)
    return site

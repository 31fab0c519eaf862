"""Resolve, compare, classify: from what we recorded and what Halo said to exactly one verdict. Pure.

No I/O, no clock (``now`` is passed in), and it never raises on data: whatever Halo sent, parsed or
not, maps to a verdict. Rules, in order:

1. Halo failed: 401 → ``unauthorized``; 403 blaming the IP → ``ip_not_allowed``; 403 blaming the
   quota → ``quota_exceeded``; anything else (timeouts, 429/5xx after retries, other 403s, 404, an
   answer that did not parse) → ``halo_unavailable``. An unparsed answer never switches a GUID.
2. Select the authoritative active site (``reconciler.core.selection``): none, but one site still
   initialising → ``initialising``; none → ``not_found``; no single one → ``ambiguous``.
3. Compare: identifiers differ (GUID changed or not) → ``business_change``; same GUID →
   ``unchanged``; new GUID that we switched away from within the flapping window → ``flapping``;
   otherwise → ``infrastructure_change``.

:func:`verify_switch` is the second step, for a change that would switch: it reads Get site status
on the new GUID (asked by the use case in the same reconciliation) and keeps the verdict only when
the site is ``active``; ``initialising`` → ``initialising``; a 403 that does not blame our IP or
quota → the change is ``unpaired``; anything else → the verdict of that failure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from reconciler.core.vocabulary import ForbiddenCause, PracticeState, SiteStatus, Verdict
from reconciler.core.identifiers import differing, identifiers_from_site, normalise_identifiers
from reconciler.core.facts import Classification, HaloAnswer, History, Recorded, SiteCheck
from reconciler.core.policy import Policy
from reconciler.core.selection import select_site
from reconciler.core.halo_errors import HaloError, HaloForbidden, HaloUnauthorized
from reconciler.core.sites import Site


def fingerprint(guid: str | None, identifiers_normalised: Mapping[str, str]) -> str:
    """A stable digest of a proposed change, so a rejected proposal is recognised when seen again."""
    document = json.dumps({"guid": guid, "identifiers": dict(sorted(identifiers_normalised.items()))}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()[:32]


def _error_verdict(error: HaloError) -> Classification:
    if isinstance(error, HaloUnauthorized):
        return Classification(Verdict.UNAUTHORIZED, f"Halo answered 401 ({error.message}).")
    if isinstance(error, HaloForbidden) and error.cause is ForbiddenCause.IP_NOT_ALLOWED:
        return Classification(Verdict.IP_NOT_ALLOWED, f"Halo answered 403: {error.message}.")
    if isinstance(error, HaloForbidden) and error.cause is ForbiddenCause.QUOTA_EXCEEDED:
        return Classification(Verdict.QUOTA_EXCEEDED, f"Halo answered 403: {error.message}.")
    return Classification(Verdict.HALO_UNAVAILABLE, f"Halo could not answer: {type(error).__name__}: {error.message}")


def classify(recorded: Recorded, answer: HaloAnswer, history: History, *, now: datetime, policy: Policy) -> Classification:
    if answer.error is not None or answer.sites is None:
        if answer.error is None:
            return Classification(Verdict.HALO_UNAVAILABLE, "Halo gave no answer.")
        return _error_verdict(answer.error)

    selection = select_site(answer.sites)
    count = len(answer.sites)
    if selection.outcome == "initialising" and selection.site is not None:
        return Classification(
            Verdict.INITIALISING,
            f"No active site carries the PMS ID; site {selection.site.id} is still initialising (a Halo Link "
            "being installed): waiting for it.",
            site=selection.site,
            new_guid=selection.site.id if selection.site.id != recorded.halo_guid else None,
        )
    if selection.outcome == "not_found":
        return Classification(Verdict.NOT_FOUND, f"No active site carries the PMS ID ({count} site(s), none active).")
    if selection.site is None:
        return Classification(
            Verdict.AMBIGUOUS,
            f"{len(selection.candidates)} active sites carry the PMS ID and no single one is authoritative.",
        )

    site = selection.site
    seen_raw = identifiers_from_site(site, answer.extra_identifiers)
    seen = normalise_identifiers(seen_raw)
    changed = tuple(differing(recorded.identifiers_normalised, seen))
    new_guid = site.id if site.id != recorded.halo_guid else None
    if changed:
        names = ", ".join(changed)
        what = f"GUID {recorded.halo_guid} -> {site.id} and " if new_guid else ""
        return Classification(
            Verdict.BUSINESS_CHANGE,
            f"Halo shows {what}different {names} (now {seen_raw.get('practice_name')!r}).",
            site=site,
            new_guid=new_guid,
            seen_identifiers=seen_raw,
            differing=changed,
            fingerprint=fingerprint(site.id, seen),
        )
    if new_guid is None:
        return Classification(Verdict.UNCHANGED, "Halo confirms the GUID in use and the recorded identifiers.",
                              site=site, seen_identifiers=seen_raw)
    left_at = history.previous_guids.get(new_guid)
    if left_at is not None and now - left_at <= timedelta(seconds=policy.flapping_window_seconds):
        return Classification(
            Verdict.FLAPPING,
            f"Halo's authoritative GUID is back to {new_guid}, which this practice left on {left_at:%Y-%m-%d %H:%M}Z.",
            site=site, new_guid=new_guid, seen_identifiers=seen_raw, fingerprint=fingerprint(new_guid, seen),
        )
    return Classification(
        Verdict.INFRASTRUCTURE_CHANGE,
        f"Halo's authoritative GUID moved {recorded.halo_guid} -> {new_guid}; the identifiers are the same.",
        site=site, new_guid=new_guid, seen_identifiers=seen_raw, fingerprint=fingerprint(new_guid, seen),
    )


def is_unpaired_answer(error: HaloError | None) -> bool:
    """Whether Get site status's failure says the site is not paired with us: a 403 that blames
    neither our IP nor our quota (Halo gives no message that tells it apart from other GUID 403s)."""
    return isinstance(error, HaloForbidden) and error.cause in (ForbiddenCause.OTHER, ForbiddenCause.NOT_AUTHORITATIVE)


def verify_switch(classification: Classification, check: SiteCheck) -> Classification:
    """The classification of a change that would switch, once Get site status answered on its GUID."""
    guid = check.guid
    if check.site is not None:
        status = check.site.status
        if status is SiteStatus.ACTIVE:
            availability = check.site.availability
            return replace(classification, site=check.site,
                           reason=f"{classification.reason} Get site status on {guid}: active"
                                  f" ({availability or 'availability unknown'}).")
        if status is SiteStatus.INITIALISING:
            return Classification(
                Verdict.INITIALISING,
                f"{classification.reason} Get site status on {guid}: still initialising; waiting for it.",
                site=check.site, new_guid=classification.new_guid,
            )
        return Classification(Verdict.HALO_UNAVAILABLE,
                              f"Find sites shows {guid} active but Get site status says {status}; asking again later.")
    if is_unpaired_answer(check.error):
        if check.paired:
            return Classification(Verdict.HALO_UNAVAILABLE,
                                  f"Site {guid} still answers 403 after pairing with it; asking again later.")
        return replace(classification, unpaired=True,
                       reason=f"{classification.reason} Get site status on {guid} answers 403: we are not paired "
                              "with the site.")
    if check.error is None:
        return Classification(Verdict.HALO_UNAVAILABLE, f"Get site status on {guid} gave no answer.")
    return _error_verdict(check.error)

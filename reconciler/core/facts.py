"""What a reconciliation knows: what we recorded, what Halo said, and what the classifier made of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.core.halo_errors import HaloError
from reconciler.core.sites import Site
from reconciler.core.vocabulary import PracticeState, Verdict


@dataclass(frozen=True)
class Recorded:
    practice_id: int
    halo_guid: str
    identifiers_normalised: Mapping[str, str]
    state: PracticeState = PracticeState.ACTIVE
    proposed_guid: str | None = None
    rejected_fingerprint: str | None = None
    backoff_attempts: int = 0
    unavailable_since: datetime | None = None  # the first of the consecutive halo_unavailable verdicts


@dataclass(frozen=True)
class History:
    # GUID → when we last switched away from it.
    previous_guids: Mapping[str, datetime] = field(default_factory=dict)
    # 403 reports for the current GUID since it was last verified, within the window.
    forbidden_reports_since_verified: int = 0


@dataclass(frozen=True)
class SiteCheck:
    """Get site status on the GUID a switch would go to, made in the same reconciliation.

    ``site`` is Halo's answer (200), else ``error`` is why there was none. ``paired`` says the worker
    paired with the site (Zedmed, D4w) after a first status call found it unpaired, and ``site`` or
    ``error`` is then the answer of the status call made after pairing."""

    guid: str
    site: Site | None = None
    error: HaloError | None = None
    paired: bool = False


@dataclass(frozen=True)
class HaloAnswer:
    sites: tuple[Site, ...] | None
    error: HaloError | None = None
    extra_identifiers: Mapping[str, Any] | None = None
    check: SiteCheck | None = None  # Get site status on the GUID a switch would go to, once asked


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    reason: str
    site: Site | None = None
    new_guid: str | None = None
    seen_identifiers: Mapping[str, Any] = field(default_factory=dict)
    differing: tuple[str, ...] = ()
    fingerprint: str | None = None
    # The new site answers 403 to Get site status: we are not paired with it (a Best Practice site
    # needs the practice's pairing code, so the change is held).
    unpaired: bool = False

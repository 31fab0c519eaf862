"""Which site is the practice's authoritative one. Pure.

A site flagged ``authoritative: false`` is never a candidate, nor is a removed or uninstalled one
(even when Halo still flags it authoritative). Of the rest:

=========================================================  ================
candidates                                                 outcome
=========================================================  ================
exactly one active site flagged ``authoritative: true``    that one
none flagged true; the one active site (of all sites)      that one (the deprecated flag may be absent)
has no flag
several active candidates, or an unflagged one beside      ``ambiguous``
another active site
no active candidate, exactly one ``initialising``          ``initialising`` (a Halo Link being installed)
no active candidate otherwise                              ``not_found``
=========================================================  ================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reconciler.core.vocabulary import SiteStatus
from reconciler.core.sites import Site

Outcome = Literal["selected", "not_found", "ambiguous", "initialising"]


@dataclass(frozen=True)
class Selection:
    outcome: Outcome
    site: Site | None
    candidates: tuple[Site, ...]


def is_candidate(site: Site) -> bool:
    """Whether a site could be the practice's: not flagged ``authoritative: false``."""
    return site.authoritative is not False


def select_site(sites: Sequence[Site]) -> Selection:
    every_active = tuple(site for site in sites if site.status is SiteStatus.ACTIVE)
    active = tuple(site for site in every_active if is_candidate(site))
    if not active:
        initialising = [site for site in sites if site.status is SiteStatus.INITIALISING and is_candidate(site)]
        if len(initialising) == 1:
            return Selection("initialising", initialising[0], active)
        return Selection("not_found", None, active)
    flagged = [site for site in active if site.authoritative is True]
    if len(flagged) == 1:
        return Selection("selected", flagged[0], active)
    if not flagged and len(every_active) == 1:
        return Selection("selected", active[0], active)
    return Selection("ambiguous", None, active)

"""Which site is the practice's authoritative one. Pure.

=====================================================  ==============
active sites (removed, uninstalled, initialising out)  outcome
=====================================================  ==============
none                                                   ``not_found``
exactly one flagged ``authoritative: true``            that one
none flagged true, exactly one active                  that one (the deprecated flag may be absent)
otherwise (two flagged true, or several unflagged)     ``ambiguous``
=====================================================  ==============

A removed or uninstalled site is never chosen, even when Halo still flags it authoritative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reconciler.core.vocabulary import SiteStatus
from reconciler.core.sites import Site

Outcome = Literal["selected", "not_found", "ambiguous"]


@dataclass(frozen=True)
class Selection:
    outcome: Outcome
    site: Site | None
    candidates: tuple[Site, ...]


def select_site(sites: Sequence[Site]) -> Selection:
    active = tuple(site for site in sites if site.status is SiteStatus.ACTIVE)
    if not active:
        return Selection("not_found", None, active)
    flagged = [site for site in active if site.authoritative is True]
    if len(flagged) == 1:
        return Selection("selected", flagged[0], active)
    if not flagged and len(active) == 1:
        return Selection("selected", active[0], active)
    return Selection("ambiguous", None, active)

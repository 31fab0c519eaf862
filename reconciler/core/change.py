"""The change one verdict makes to a practice, as data the store applies in one transaction. Pure.

``reconciler.core.policy.decide`` builds it (the column values, the GUID history entry, every
ticket to open or resolve, the integrator-wide flags); ``SqlStore.apply_change`` writes it. Nothing
here decides anything: this module holds the shape and the reason groups the rules share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.core.vocabulary import Action, TicketKind, TicketReason, Verdict

# Verdicts after which no held proposal stands.
PROPOSAL_ENDING_VERDICTS = (Verdict.NOT_FOUND, Verdict.AMBIGUOUS, Verdict.FLAPPING)

# Integrator-wide conditions that clear as soon as Halo answers a call normally.
INTEGRATOR_WIDE_REASONS = (TicketReason.IP_NOT_ALLOWED, TicketReason.QUOTA_EXCEEDED, TicketReason.UNAUTHORIZED)


@dataclass(frozen=True)
class TicketSpec:
    kind: TicketKind
    reason: TicketReason
    integrator_wide: bool
    detail: str


@dataclass(frozen=True)
class PracticeChange:
    values: dict[str, Any]  # practice columns to write (the version column is the store's)
    action: Action = Action.NONE  # what the audit row says was done
    switch_to: str | None = None  # close the current GUID history entry, open one for this GUID
    history_reason: str = ""
    tickets: tuple[TicketSpec, ...] = ()  # open, or count once more
    resolve: tuple[TicketReason, ...] = ()  # this practice's tickets with these reasons
    # Integrator-wide tickets a normal answer resolves, but only those nobody saw since this instant:
    # a condition the application reported within the persistence window stands (no churn).
    resolve_integrator_wide: tuple[TicketReason, ...] = ()
    integrator_wide_quiet_since: datetime | None = None
    pause_autoswitch: bool = False

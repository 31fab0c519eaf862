"""What to do with a verdict: the verdict table's "default action" column and its policies. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from reconciler.core import backoff, ticket_texts as texts
from reconciler.core.facts import Classification, History, Recorded
from reconciler.core.vocabulary import (
    Action,
    BusinessPolicy,
    InfrastructurePolicy,
    PracticeState,
    TicketKind,
    TicketReason,
    Verdict,
)



@dataclass(frozen=True)
class Policy:
    infrastructure: InfrastructurePolicy = InfrastructurePolicy.SWITCH
    business: BusinessPolicy = BusinessPolicy.HOLD
    forbidden_threshold: int = 3
    forbidden_window_seconds: int = 3600
    flapping_window_seconds: int = 7 * 24 * 3600
    mass_change_min: int = 50
    mass_change_fraction: float = 0.10
    mass_change_window_seconds: int = 3600
    backoff_min_seconds: int = 60
    backoff_max_seconds: int = 3600
    unavailable_ticket_after_seconds: int = 86400

    def mass_change_limit(self, onboarded: int) -> int:
        """Automatic switches allowed per window: max(absolute, share of the fleet)."""
        return max(self.mass_change_min, math.ceil(self.mass_change_fraction * onboarded))


@dataclass(frozen=True)
class GuardState:
    autoswitch_paused: bool
    switches_in_window: int
    onboarded_practices: int


@dataclass(frozen=True)
class TicketSpec:
    kind: TicketKind
    reason: TicketReason
    integrator_wide: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    action: Action
    switch_to: str | None = None
    hold: bool = False
    ticket: TicketSpec | None = None
    resolve_tickets: tuple[TicketReason, ...] = ()
    trip_guard: bool = False
    backoff: bool = False
    reset_backoff: bool = False


# A clean verification clears every per-practice condition; a business change waiting for a person
# clears only by approve, reject or the practice going back to what we recorded.
_CLEARED_BY_UNCHANGED = (
    TicketReason.FORBIDDEN_PERSISTS,
    TicketReason.NOT_FOUND,
    TicketReason.AMBIGUOUS,
    TicketReason.FLAPPING,
    TicketReason.BUSINESS_CHANGE,
    TicketReason.INFRASTRUCTURE_CHANGE,
    TicketReason.PAIRING_REQUIRED,
)

# The tickets of a change held for a person: approve, reject, pairing, or a proposal that no longer
# stands (not_found, ambiguous, flapping) resolve them.
HELD_REASONS = (TicketReason.BUSINESS_CHANGE, TicketReason.INFRASTRUCTURE_CHANGE, TicketReason.PAIRING_REQUIRED)

# 403s that persisted after a clean verification are explained once Halo shows the practice changed
# (it changed right after that verification): the change's own handling replaces that ticket.
_EXPLAINED_BY_A_CHANGE = (TicketReason.FORBIDDEN_PERSISTS,)


def _ticket(kind: TicketKind, reason: TicketReason, detail: str, *, integrator_wide: bool = False) -> TicketSpec:
    return TicketSpec(kind=kind, reason=reason, integrator_wide=integrator_wide, detail=detail)


def decide(
    classification: Classification,
    recorded: Recorded,
    *,
    policy: Policy,
    guard: GuardState,
    history: History,
) -> Decision:
    verdict = classification.verdict
    seen = classification.reason

    if verdict is Verdict.UNCHANGED:
        if history.forbidden_reports_since_verified >= policy.forbidden_threshold:
            return Decision(
                Action.TICKETED,
                ticket=_ticket(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.FORBIDDEN_PERSISTS,
                               texts.forbidden_persists(reports=history.forbidden_reports_since_verified, seen=seen)),
                resolve_tickets=tuple(r for r in _CLEARED_BY_UNCHANGED if r is not TicketReason.FORBIDDEN_PERSISTS),
                reset_backoff=True,
            )
        return Decision(Action.MARKED_VERIFIED, resolve_tickets=_CLEARED_BY_UNCHANGED, reset_backoff=True)

    if verdict is Verdict.INFRASTRUCTURE_CHANGE:
        new = classification.new_guid
        if classification.fingerprint is not None and classification.fingerprint == recorded.rejected_fingerprint:
            # A person rejected exactly this change (held by policy, the guard or for pairing): it is
            # neither switched to nor ticketed again until Halo proposes something else.
            return Decision(Action.NONE, reset_backoff=True)
        if classification.unpaired:
            return Decision(Action.HELD, hold=True, reset_backoff=True, resolve_tickets=_EXPLAINED_BY_A_CHANGE,
                            ticket=_ticket(TicketKind.CONTACT_PRACTICE, TicketReason.PAIRING_REQUIRED,
                                           texts.pairing_required(seen=seen, practice_id=recorded.practice_id)))
        if policy.infrastructure == InfrastructurePolicy.HOLD:
            return Decision(Action.HELD, hold=True, reset_backoff=True, resolve_tickets=_EXPLAINED_BY_A_CHANGE,
                            ticket=_ticket(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.INFRASTRUCTURE_CHANGE,
                                           texts.infrastructure_change_held(seen=seen, practice_id=recorded.practice_id)))
        limit = policy.mass_change_limit(guard.onboarded_practices)
        if guard.autoswitch_paused or guard.switches_in_window >= limit:
            return Decision(Action.HELD, hold=True, reset_backoff=True, trip_guard=not guard.autoswitch_paused,
                            resolve_tickets=_EXPLAINED_BY_A_CHANGE)
        ticket = None
        if policy.infrastructure == InfrastructurePolicy.SWITCH_AND_TICKET:
            ticket = _ticket(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.INFRASTRUCTURE_CHANGE,
                             texts.infrastructure_change_switched(seen=seen))
        return Decision(Action.SWITCHED, switch_to=new, ticket=ticket, reset_backoff=True,
                        resolve_tickets=(TicketReason.NOT_FOUND, TicketReason.AMBIGUOUS, TicketReason.FORBIDDEN_PERSISTS))

    if verdict is Verdict.BUSINESS_CHANGE:
        if classification.fingerprint is not None and classification.fingerprint == recorded.rejected_fingerprint:
            return Decision(Action.NONE, reset_backoff=True)  # a person already rejected exactly this
        return Decision(
            Action.HELD, hold=True, reset_backoff=True, resolve_tickets=_EXPLAINED_BY_A_CHANGE,
            ticket=_ticket(TicketKind.CONTACT_PRACTICE, TicketReason.BUSINESS_CHANGE,
                           texts.business_change(seen=seen, practice_id=recorded.practice_id)),
        )

    # A proposal never outlives these verdicts: the held change's tickets resolve with it.
    if verdict is Verdict.NOT_FOUND:
        return Decision(Action.TICKETED, reset_backoff=True, resolve_tickets=HELD_REASONS, ticket=_ticket(
            TicketKind.CONTACT_PRACTICE, TicketReason.NOT_FOUND,
            texts.not_found(seen=seen)))
    if verdict is Verdict.AMBIGUOUS:
        return Decision(Action.TICKETED, reset_backoff=True, resolve_tickets=HELD_REASONS, ticket=_ticket(
            TicketKind.CONTACT_HALO_SUPPORT, TicketReason.AMBIGUOUS,
            texts.ambiguous(seen=seen)))
    if verdict is Verdict.FLAPPING:
        return Decision(Action.TICKETED, reset_backoff=True, resolve_tickets=HELD_REASONS, ticket=_ticket(
            TicketKind.CONTACT_HALO_SUPPORT, TicketReason.FLAPPING,
            texts.flapping(seen=seen)))
    if verdict is Verdict.INITIALISING:
        # A Halo Link being installed: wait for it, with halo_unavailable's backoff, and ask nobody.
        return Decision(Action.BACKED_OFF, backoff=True)
    if verdict is Verdict.IP_NOT_ALLOWED:
        return Decision(Action.TICKETED, ticket=_ticket(
            TicketKind.CONTACT_HALO_SUPPORT, TicketReason.IP_NOT_ALLOWED,
            texts.ip_not_allowed(seen=seen), integrator_wide=True))
    if verdict is Verdict.QUOTA_EXCEEDED:
        return Decision(Action.TICKETED, ticket=_ticket(
            TicketKind.CONTACT_HALO_SUPPORT, TicketReason.QUOTA_EXCEEDED,
            texts.quota_exceeded(seen=seen), integrator_wide=True))
    if verdict is Verdict.UNAUTHORIZED:
        return Decision(Action.TICKETED, ticket=_ticket(
            TicketKind.CHECK_INTEGRATION, TicketReason.UNAUTHORIZED,
            texts.unauthorized(seen=seen),
            integrator_wide=True))
    return Decision(Action.BACKED_OFF, backoff=True)  # halo_unavailable


def next_backoff(attempts: int, *, policy: Policy, random: float) -> timedelta:
    """Wait before retry number ``attempts + 1`` of a practice: equal jitter, within [min/2, max]."""
    return timedelta(seconds=backoff.equal_jitter(attempts, base=policy.backoff_min_seconds, random=random,
                                                  cap=policy.backoff_max_seconds))


__all__ = ["HELD_REASONS", "Decision", "GuardState", "Policy", "PracticeState", "TicketSpec", "decide", "next_backoff"]

"""What to do with a verdict: the verdict table's "default action" column, its policies, and the whole
change that follows (``decide``: columns, tickets, flags). Pure."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.core import backoff, ticket_texts as texts
from reconciler.core.change import INTEGRATOR_WIDE_REASONS, PROPOSAL_ENDING_VERDICTS, PracticeChange, TicketSpec
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
    # The breaker's probe schedule (HALO_RECONCILER_BREAKER_PROBE_SECONDS, ..._MAX_SECONDS), which the
    # breaker's tickets state.
    breaker_probe_seconds: float = 60.0
    breaker_probe_max_seconds: float = 3600.0

    def mass_change_limit(self, onboarded: int) -> int:
        """Automatic switches allowed per window: max(absolute, share of the fleet)."""
        return max(self.mass_change_min, math.ceil(self.mass_change_fraction * onboarded))


@dataclass(frozen=True)
class GuardState:
    autoswitch_paused: bool
    switches_in_window: int
    onboarded_practices: int


@dataclass(frozen=True)
class Decision:
    """One row of the verdict table under the policies (``decision_for``); ``change_for`` makes it a change."""

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


@dataclass(frozen=True)
class _Ticketed:
    """A verdict whose default action is one ticket: who to contact, why, and the ticket's text."""

    kind: TicketKind
    reason: TicketReason
    text: Callable[..., str]
    # An integrator-wide condition (the key, the IP, the quota) says nothing about the practice: its
    # backoff and held proposal stay. A per-practice one ends any proposal (it no longer stands).
    integrator_wide: bool = False


_TICKETED: dict[Verdict, _Ticketed] = {
    Verdict.NOT_FOUND: _Ticketed(TicketKind.CONTACT_PRACTICE, TicketReason.NOT_FOUND, texts.not_found),
    Verdict.AMBIGUOUS: _Ticketed(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.AMBIGUOUS, texts.ambiguous),
    Verdict.FLAPPING: _Ticketed(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.FLAPPING, texts.flapping),
    Verdict.IP_NOT_ALLOWED: _Ticketed(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.IP_NOT_ALLOWED,
                                      texts.ip_not_allowed, integrator_wide=True),
    Verdict.QUOTA_EXCEEDED: _Ticketed(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.QUOTA_EXCEEDED,
                                      texts.quota_exceeded, integrator_wide=True),
    Verdict.UNAUTHORIZED: _Ticketed(TicketKind.CHECK_INTEGRATION, TicketReason.UNAUTHORIZED,
                                    texts.unauthorized, integrator_wide=True),
}

# Verdicts that are no answer about the practice: Halo refused the call or could not make it.
NOT_AN_ANSWER = (Verdict.HALO_UNAVAILABLE, Verdict.UNAUTHORIZED, Verdict.IP_NOT_ALLOWED, Verdict.QUOTA_EXCEEDED)


def decide(
    classification: Classification,
    recorded: Recorded,
    *,
    policy: Policy,
    guard: GuardState,
    history: History,
    now: datetime,
    random: float,
) -> PracticeChange:
    """The whole change one verdict makes: the verdict table's action, every ticket it opens or
    resolves, the practice's columns. ``change.switch_to`` is the pure "would this switch?" answer:
    the reconciliation verifies that GUID with Halo and decides again on the verified classification."""
    decision = decision_for(classification, recorded, policy=policy, guard=guard, history=history)
    return change_for(decision, classification, recorded, policy=policy, now=now, random=random)


def decision_for(
    classification: Classification,
    recorded: Recorded,
    *,
    policy: Policy,
    guard: GuardState,
    history: History,
) -> Decision:
    """The verdict table's "default action" column under the configured policies."""
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

    row = _TICKETED.get(verdict)
    if row is not None:
        if row.integrator_wide:  # the breaker's verdicts: the ticket also says when the breaker probes
            probes = texts.breaker_probes(probe_seconds=policy.breaker_probe_seconds,
                                          probe_max_seconds=policy.breaker_probe_max_seconds)
            ticket = _ticket(row.kind, row.reason, row.text(seen=seen, probes=probes), integrator_wide=True)
            return Decision(Action.TICKETED, ticket=ticket)
        ticket = _ticket(row.kind, row.reason, row.text(seen=seen))
        # A proposal never outlives these verdicts: the held change's tickets resolve with it.
        return Decision(Action.TICKETED, ticket=ticket, reset_backoff=True, resolve_tickets=HELD_REASONS)
    # initialising (a Halo Link being installed: wait for it, and ask nobody) and halo_unavailable.
    return Decision(Action.BACKED_OFF, backoff=True)


def change_for(
    decision: Decision,
    classification: Classification,
    recorded: Recorded,
    *,
    policy: Policy,
    now: datetime,
    random: float,
    halo_answered: bool | None = None,
) -> PracticeChange:
    """A decision as the columns, GUID history entry, tickets and flags the store writes in one
    transaction. ``halo_answered`` (default: the verdict is an answer about the practice) sets
    ``last_verified_at`` and ends a run of halo_unavailable."""
    verdict = classification.verdict
    if halo_answered is None:
        halo_answered = verdict not in NOT_AN_ANSWER
    values: dict[str, Any] = {"last_verdict": verdict, "updated_at": now}
    if halo_answered:
        values["last_verified_at"] = now
    if decision.switch_to:
        values.update(halo_guid=decision.switch_to, state=PracticeState.ACTIVE, proposed_guid=None,
                      proposed_identifiers=None)
    elif decision.hold:
        values.update(
            state=PracticeState.HELD,
            proposed_guid=classification.new_guid or recorded.halo_guid,
            proposed_identifiers=dict(classification.seen_identifiers),
        )
    elif verdict is Verdict.UNCHANGED:
        values.update(state=PracticeState.ACTIVE, proposed_guid=None, proposed_identifiers=None)
    elif verdict in PROPOSAL_ENDING_VERDICTS:
        # A proposal never outlives these: approving it later would switch to what Halo no longer shows.
        values.update(proposed_guid=None, proposed_identifiers=None)
        if recorded.state == PracticeState.HELD:
            values["state"] = PracticeState.ACTIVE
    site = classification.site
    if site is not None and (decision.switch_to == site.id or (verdict is Verdict.UNCHANGED
                                                               and site.id == recorded.halo_guid)):
        # The availability Halo reports for the GUID in use (after a switch, Get site status's).
        values["availability"] = str(site.availability) if site.availability else None
    if decision.backoff:
        values.update(
            backoff_attempts=recorded.backoff_attempts + 1,
            next_attempt_at=now + next_backoff(recorded.backoff_attempts, policy=policy, random=random),
        )
        if recorded.state != PracticeState.HELD:
            values["state"] = PracticeState.BACKOFF
    elif decision.reset_backoff or halo_answered:
        values.update(backoff_attempts=0, next_attempt_at=None)
        if recorded.state == PracticeState.BACKOFF and "state" not in values:
            values["state"] = PracticeState.ACTIVE

    tickets: list[TicketSpec] = [decision.ticket] if decision.ticket is not None else []
    if decision.trip_guard:
        tickets.append(_ticket(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.MASS_CHANGE, integrator_wide=True,
                               detail=texts.mass_change(window_seconds=policy.mass_change_window_seconds)))
    resolve = tuple(decision.resolve_tickets)
    resolve_integrator_wide: tuple[TicketReason, ...] = ()
    quiet_since: datetime | None = None
    if halo_answered:
        resolve_integrator_wide = INTEGRATOR_WIDE_REASONS
        quiet_since = now - timedelta(seconds=policy.forbidden_window_seconds)
    if verdict is Verdict.HALO_UNAVAILABLE:
        since = recorded.unavailable_since or now
        values["unavailable_since"] = since
        if (now - since).total_seconds() >= policy.unavailable_ticket_after_seconds:
            tickets.append(_ticket(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.UNAVAILABLE_PERSISTS,
                                   texts.unavailable_persists(since=since, seen=classification.reason)))
    elif halo_answered:
        # Any answer about the practice ends the run of halo_unavailable (initialising included).
        values["unavailable_since"] = None
        resolve = resolve + (TicketReason.UNAVAILABLE_PERSISTS,)
    return PracticeChange(
        values=values,
        action=decision.action,
        switch_to=decision.switch_to,
        history_reason=str(verdict),
        tickets=tuple(tickets),
        resolve=resolve,
        resolve_integrator_wide=resolve_integrator_wide,
        integrator_wide_quiet_since=quiet_since,
        pause_autoswitch=decision.trip_guard,
    )


def next_backoff(attempts: int, *, policy: Policy, random: float) -> timedelta:
    """Wait before retry number ``attempts + 1`` of a practice: equal jitter, within [min/2, max]."""
    return timedelta(seconds=backoff.equal_jitter(attempts, base=policy.backoff_min_seconds, random=random,
                                                  cap=policy.backoff_max_seconds))


__all__ = ["HELD_REASONS", "NOT_AN_ANSWER", "Decision", "GuardState", "Policy", "PracticeChange", "PracticeState", "TicketSpec",
           "change_for", "decide", "decision_for", "next_backoff"]

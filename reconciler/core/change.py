"""The change one verdict makes to a practice, calculated before anything is written. Pure.

``plan_change`` turns a classification and the policy's decision into column values, a GUID
history entry, tickets to open or resolve and integrator-wide flags; the store applies it in the
act step's one transaction. Nothing here reads a clock or draws a random number: both are passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconciler.core import ticket_texts as texts
from reconciler.core.classify import Classification, Recorded
from reconciler.core.policy import Decision, Policy, TicketSpec, next_backoff
from reconciler.core.vocabulary import PracticeState, TicketKind, TicketReason, Verdict

# Verdicts after which no held proposal stands.
PROPOSAL_ENDING_VERDICTS = (Verdict.NOT_FOUND, Verdict.AMBIGUOUS, Verdict.FLAPPING)

# Integrator-wide conditions that clear as soon as Halo answers a call normally.
INTEGRATOR_WIDE_REASONS = (TicketReason.IP_NOT_ALLOWED, TicketReason.QUOTA_EXCEEDED, TicketReason.UNAUTHORIZED)


@dataclass(frozen=True)
class PracticeChange:
    values: dict[str, Any]  # practice columns to write (the version column is the store's)
    switch_to: str | None = None  # close the current GUID history entry, open one for this GUID
    history_reason: str = ""
    tickets: tuple[TicketSpec, ...] = ()  # open, or count once more
    resolve: tuple[TicketReason, ...] = ()  # this practice's tickets with these reasons
    # Integrator-wide tickets a normal answer resolves, but only those nobody saw since this instant:
    # a condition the application reported within the persistence window stands (no churn).
    resolve_integrator_wide: tuple[TicketReason, ...] = ()
    integrator_wide_quiet_since: datetime | None = None
    pause_autoswitch: bool = False


def plan_change(
    recorded: Recorded,
    classification: Classification,
    decision: Decision,
    *,
    halo_answered: bool,
    now: datetime,
    policy: Policy,
    random: float,
) -> PracticeChange:
    verdict = classification.verdict
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
        tickets.append(TicketSpec(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.MASS_CHANGE, integrator_wide=True,
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
            tickets.append(TicketSpec(TicketKind.CONTACT_HALO_SUPPORT, TicketReason.UNAVAILABLE_PERSISTS,
                                      integrator_wide=False, detail=texts.unavailable_persists(
                                          since=since, seen=classification.reason)))
    elif halo_answered:
        # Any answer about the practice ends the run of halo_unavailable (initialising included).
        values["unavailable_since"] = None
        resolve = resolve + (TicketReason.UNAVAILABLE_PERSISTS,)
    return PracticeChange(
        values=values,
        switch_to=decision.switch_to,
        history_reason=str(verdict),
        tickets=tuple(tickets),
        resolve=resolve,
        resolve_integrator_wide=resolve_integrator_wide,
        integrator_wide_quiet_since=quiet_since,
        pause_autoswitch=decision.trip_guard,
    )

"""People in the loop: approve, pair or reject a held change, pause or resume automatic switching.

Every decision carries the person who made it (``actor``) and why (``note``): each writes one
``OperatorDecision`` row in the same unit of work as what it decided, and the reconciliation rows
it writes carry the same actor, so ``audit`` names the person, not the worker.

``approve`` and ``pair`` ask Halo first (outside any transaction) and then apply the decision in one
unit of work, only while the practice is still as it was read; they commit it. ``reject`` and
``set_autoswitch`` work in the caller's unit of work (``Store``) and leave the commit to it, so the
decision, its audit record and the tickets it resolves land together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from models import (
    Action,
    OperatorDecision,
    Practice,
    PracticeState,
    Reconciliation,
    Ticket,
    TicketKind,
    TicketReason,
    Trigger,
    Verdict,
)
from models.guard import AUTOSWITCH_PAUSED
from reconciler import logs
from reconciler.core import ticket_texts as texts
from reconciler.core.classify import HaloAnswer, History, classify, fingerprint, is_unpaired_answer, verify_switch
from reconciler.core.errors import InvalidState, OperationFailed
from reconciler.core.halo_errors import HaloError, HaloPairingRefused
from reconciler.core.identifiers import identifiers_from_site, normalise_identifiers
from reconciler.core.policy import HELD_REASONS, Decision, GuardState, Policy, TicketSpec, change_for, decision_for
from reconciler.core.selection import select_site
from reconciler.core.sites import Site
from reconciler.core.vocabulary import DecisionAction, SiteStatus
from reconciler.usecases.ports import Halo, Store, UnitOfWork
from reconciler.usecases.reconcile import ask_halo, check_site, recorded_from, summarise

log = logs.get_logger()



@dataclass(frozen=True)
class Decided:
    """What ``approve`` or ``pair`` did: ``switched`` (or confirmed), else ``message`` says why not.
    ``approvals_missing`` > 0: the approval was recorded and that many more people must approve."""

    practice: Practice
    done: bool
    message: str = ""
    approvals_missing: int = 0
    approved_by: tuple[str, ...] = ()


def proposal_fingerprint(store: Store, practice: Practice) -> str:
    """The held proposal an approval is given to: a new proposal (GUID or identifiers) is a new one,
    and so is the same proposal held again after it was let go (its held-change ticket is another)."""
    proposal = fingerprint(practice.proposed_guid,
                           normalise_identifiers(practice.proposed_identifiers or practice.identifiers or {}))
    return f"{proposal}:{_held_ticket_id(store, practice) or '-'}"


def approvals_required(practice: Practice, required: int) -> int:
    """Two people (``required``) for a business change; any other held change needs one."""
    return required if practice.last_verdict == Verdict.BUSINESS_CHANGE else 1


def _record_approval(unit_of_work: UnitOfWork, read: Practice, *, required: int, now: datetime, actor: str,
                     note: str | None) -> Decided | None:
    """Count this approval toward the ``required``: None when it completes them (ask Halo and switch);
    otherwise it is recorded (or refused: the same person twice) and nothing else happens."""
    needed = approvals_required(read, required)
    with unit_of_work() as store:
        practice = _current(store, read)
        proposal = proposal_fingerprint(store, practice)
        store.discard_approvals(practice.id, keep=proposal)  # type: ignore[arg-type]  # given to an older proposal
        given = store.approvals(practice.id, fingerprint=proposal)  # type: ignore[arg-type]
        if actor in given:
            if len(given) >= needed:  # complete already (two people approved at the same moment): decide now
                return None
            raise OperationFailed(f"{actor} has already approved the change of practice {practice.id}; "
                                  f"{needed - len(given)} more approval(s) by someone else are needed; nothing changed")
        if len(given) + 1 >= needed:
            store.commit()  # only the discarded approvals of an older proposal
            return None
        store.add_approval(practice.id, fingerprint=proposal, actor=actor, now=now)  # type: ignore[arg-type]
        missing = needed - len(given) - 1
        _decided(store, DecisionAction.APPROVED, actor=actor, note=note, now=now, practice_id=practice.id,
                 ticket_id=_held_ticket_id(store, practice),
                 detail=f"approval {len(given) + 1} of {needed} for {practice.proposed_guid}: "
                        f"{missing} more by another person before it switches; nothing switched yet")
        store.commit()
    with unit_of_work() as store:
        # Another person's approval may have landed while this one was written: counted together they
        # may complete the change, and then this approval decides it (never two left waiting forever).
        given = store.approvals(read.id, fingerprint=proposal)  # type: ignore[arg-type]
        if len(given) >= needed:
            return None
        log.info("approval_recorded", practice_id=read.id, actor=actor, missing=needed - len(given))
        return Decided(store.detach(store.practice(read.id)), False,  # type: ignore[arg-type]
                       f"{needed - len(given)} more approval(s) by another person are needed",
                       approvals_missing=needed - len(given), approved_by=tuple(given))


def _held(store: Store, practice_id: int) -> Practice:
    practice = store.practice(practice_id)
    if practice.state != PracticeState.HELD or not practice.proposed_guid:
        raise InvalidState(f"practice {practice_id} has no held change (state {practice.state})")
    return practice


def _audit(store: Store, practice: Practice, *, action: Action, new_guid: str, detail: str, now: datetime,
           verdict: Verdict | None = None, halo_answer: dict[str, Any] | None = None,
           actor: str | None = None, note: str | None = None) -> Reconciliation:
    return store.add_audit(Reconciliation(
        practice_id=practice.id,  # type: ignore[arg-type]
        trigger=Trigger.MANUAL,
        started_at=now,
        finished_at=now,
        duration_ms=0,
        verdict=verdict or practice.last_verdict or Verdict.BUSINESS_CHANGE,
        action=action,
        old_guid=practice.halo_guid,
        new_guid=new_guid,
        detail=detail,
        halo_answer=halo_answer,
        actor=actor,
        note=note,
    ))


def _decided(store: Store, action: DecisionAction, *, actor: str, note: str | None, now: datetime,
             practice_id: int | None = None, ticket_id: int | None = None, detail: str | None = None,
             reconciliation: Reconciliation | None = None) -> OperatorDecision:
    """The decision's own audit row, in the caller's unit of work."""
    row = store.add_decision(OperatorDecision(
        at=now, actor=actor, action=str(action), practice_id=practice_id, ticket_id=ticket_id,
        reconciliation_id=reconciliation.id if reconciliation is not None else None,
        note=note, detail=detail[:2000] if detail else None,
    ))
    log.info("decision_recorded", action=str(action), actor=actor, practice_id=practice_id, ticket_id=ticket_id)
    return row


def _read_held(unit_of_work: UnitOfWork, practice_id: int) -> Practice:
    with unit_of_work() as store:
        return store.detach(_held(store, practice_id))


def _current(store: Store, read: Practice) -> Practice:
    """The practice again, in this unit of work, only if nothing changed it since ``read``."""
    practice = _held(store, read.id)  # type: ignore[arg-type]
    if practice.version != read.version:
        raise OperationFailed(f"practice {read.id} changed while Halo was asked; nothing was switched; "
                              "look at it again before deciding")
    return practice


def _switch(store: Store, practice: Practice, *, site: Site, identifiers: dict[str, Any], reason: str,
            detail: str, now: datetime, halo_answer: dict[str, Any], actor: str, note: str | None,
            decision: DecisionAction) -> None:
    """Switch a held practice to ``site`` (Get site status answered ``active`` on it just now)."""
    new_guid, old_guid = site.id, practice.halo_guid
    audit = _audit(store, practice, action=Action.SWITCHED if new_guid != old_guid else Action.MARKED_VERIFIED,
                   new_guid=new_guid, detail=detail, now=now, halo_answer=halo_answer, actor=actor, note=note)
    switched = f"switched from {old_guid} to {new_guid}" if new_guid != old_guid else f"confirmed {new_guid}"
    _decided(store, decision, actor=actor, note=note, now=now, practice_id=practice.id, reconciliation=audit,
             ticket_id=_held_ticket_id(store, practice), detail=f"{detail}: {switched}")
    store.write_practice(practice, {
        "halo_guid": new_guid,
        "identifiers": identifiers,
        "identifiers_normalised": normalise_identifiers(identifiers),
        "practice_name": str(identifiers.get("practice_name") or practice.practice_name),
        "state": PracticeState.ACTIVE,
        "proposed_guid": None,
        "proposed_identifiers": None,
        "rejected_fingerprint": None,
        "availability": str(site.availability) if site.availability else None,
        "last_verified_at": now,
        "backoff_attempts": 0,
        "next_attempt_at": None,
        "updated_at": now,
    })
    if new_guid != old_guid:
        store.switch_history(practice, new_guid, reason=reason, now=now)
    store.resolve_tickets(practice_id=practice.id, reasons=HELD_REASONS, now=now)
    store.discard_approvals(practice.id)  # type: ignore[arg-type]
    log.info("guid_switched" if new_guid != old_guid else "change_confirmed", practice_id=practice.id,
             old_guid=old_guid, new_guid=new_guid, by=reason)


def _held_ticket_id(store: Store, practice: Practice) -> int | None:
    """The open ticket the held change is waiting on (business change, pairing, ...), if any."""
    held = [t for t in store.list_tickets(practice_id=practice.id) if t.reason in HELD_REASONS]  # type: ignore[arg-type]
    return held[0].id if held else None


def approve(unit_of_work: UnitOfWork, halo: Halo, *, practice_id: int, now: datetime, policy: Policy,
            actor: str, note: str | None = None, identifier_query: str | None = None,
            required: int = 1) -> Decided:
    """Approve a held change, asking Halo again first (PRODUCT.md, "approve asks Halo again").

    Find sites and Get site status on the proposed GUID: only when Halo still shows the proposed GUID
    as the authoritative active site with the proposed identifiers is it switched to. When Halo shows
    anything else, nothing is switched: the practice stays held with the new proposal, or leaves held
    when there is no longer a change to decide, and ``Decided.message`` says what changed. When Halo
    cannot answer, its error propagates and nothing changes.

    With ``required`` > 1 (``HALO_RECONCILER_APPROVALS_REQUIRED``) a business change is only recorded
    as approved until that many different people approved the same proposal; the last asks Halo.
    """
    read = _read_held(unit_of_work, practice_id)
    recorded_only = _record_approval(unit_of_work, read, required=required, now=now, actor=actor, note=note)
    if recorded_only is not None:
        return recorded_only
    read = _read_held(unit_of_work, practice_id)  # the version the approval bookkeeping left
    proposed: str = read.proposed_guid  # type: ignore[assignment]
    proposed_identifiers = dict(read.proposed_identifiers or read.identifiers)
    answer = ask_halo(halo, read, identifier_query)
    if answer.error is not None:
        raise answer.error
    selection = select_site(answer.sites or ())
    site = selection.site if selection.outcome == "selected" else None
    if site is not None and site.id == proposed and normalise_identifiers(
            identifiers_from_site(site, answer.extra_identifiers)) == normalise_identifiers(proposed_identifiers):
        check = check_site(halo, read, proposed)
        answer = replace(answer, check=check)
        if check.site is not None and check.site.status is SiteStatus.ACTIVE:
            with unit_of_work() as store:
                practice = _current(store, read)
                _switch(store, practice, site=check.site, identifiers=proposed_identifiers, reason="approved",
                        detail=f"approved by {actor}", now=now, halo_answer=summarise(answer), actor=actor,
                        note=note, decision=DecisionAction.APPROVED)
                store.commit()
                log.info("change_approved", practice_id=practice_id, new_guid=proposed)
                return Decided(store.practice(practice_id), True)
        if check.site is None and not is_unpaired_answer(check.error) and check.error is not None:
            raise check.error  # Halo cannot answer: nothing changes
    return _overtaken(unit_of_work, read, answer, now=now, policy=policy, actor=actor, note=note)


def _overtaken(unit_of_work: UnitOfWork, read: Practice, answer: HaloAnswer, *, now: datetime,
               policy: Policy, actor: str, note: str | None) -> Decided:
    """Approve found Halo showing something other than the proposal: apply what Halo shows now,
    holding any change for a new decision (never switching), and say what changed."""
    proposed: str = read.proposed_guid  # type: ignore[assignment]
    with unit_of_work() as store:
        practice = _current(store, read)
        recorded = recorded_from(practice)
        history = History(previous_guids=store.previous_guids(practice.id))  # type: ignore[arg-type]
        classification = classify(recorded, answer, history, now=now, policy=policy)
        if answer.check is not None and answer.check.guid == classification.new_guid:
            classification = verify_switch(classification, answer.check)
        verdict = classification.verdict
        detail = texts.approve_overtaken(proposed=proposed, seen=classification.reason)
        if verdict in (Verdict.BUSINESS_CHANGE, Verdict.INFRASTRUCTURE_CHANGE):
            if classification.unpaired:
                kind, reason = TicketKind.CONTACT_PRACTICE, TicketReason.PAIRING_REQUIRED
                detail = texts.pairing_required(seen=classification.reason, practice_id=practice.id)  # type: ignore[arg-type]
            elif verdict is Verdict.BUSINESS_CHANGE:
                kind, reason = TicketKind.CONTACT_PRACTICE, TicketReason.BUSINESS_CHANGE
            else:
                kind, reason = TicketKind.CONTACT_HALO_SUPPORT, TicketReason.INFRASTRUCTURE_CHANGE
            decision = Decision(Action.HELD, hold=True, reset_backoff=True,
                                ticket=TicketSpec(kind, reason, integrator_wide=False, detail=detail),
                                resolve_tickets=tuple(r for r in HELD_REASONS if r is not reason))
        else:
            decision = decision_for(classification, recorded, policy=policy, history=history,
                              guard=GuardState(autoswitch_paused=True, switches_in_window=0, onboarded_practices=0))
            ticket = decision.ticket and replace(decision.ticket, detail=f"{detail} {decision.ticket.detail}")
            decision = replace(decision, ticket=ticket, switch_to=None, hold=False,
                               resolve_tickets=tuple(dict.fromkeys((*decision.resolve_tickets, *HELD_REASONS))))
        change = change_for(decision, classification, recorded, halo_answered=True, now=now, policy=policy,
                            random=0.5)
        values = dict(change.values)
        if not decision.hold:
            # No longer a change to decide: the practice leaves held.
            values.update(proposed_guid=None, proposed_identifiers=None)
            if values.get("state", PracticeState.HELD) == PracticeState.HELD:
                values["state"] = PracticeState.BACKOFF if decision.backoff else PracticeState.ACTIVE
        ticket_id = _held_ticket_id(store, practice)
        store.apply_change(practice, replace(change, values=values), now=now)
        # What Halo showed is a reconciliation like any other (the worker's row); the person's
        # approval is recorded beside it, saying that nothing was switched.
        _audit(store, practice, action=decision.action, new_guid=classification.new_guid or practice.halo_guid,
               detail=detail[:2000], now=now, verdict=verdict, halo_answer=summarise(answer))
        _decided(store, DecisionAction.APPROVE_REFUSED, actor=actor, note=note, now=now, practice_id=practice.id,
                 ticket_id=ticket_id, detail=f"nothing switched: {detail}")
        store.discard_approvals(practice.id)  # type: ignore[arg-type]  # Halo shows something else now
        store.commit()
        log.info("approve_overtaken", practice_id=practice.id, proposed_guid=proposed, verdict=str(verdict))
        return Decided(store.practice(practice.id), False, detail)  # type: ignore[arg-type]


def pair(unit_of_work: UnitOfWork, halo: Halo, *, practice_id: int, pairing_code: str, now: datetime,
         actor: str, note: str | None = None) -> Decided:
    """Complete a change held for ``pairing_required``: pair with the practice's code, check the site
    again (Get site status ``active``) and switch. A refused code (``HaloPairingRefused``) and any
    Halo failure propagate; nothing changes then."""
    read = _read_held(unit_of_work, practice_id)
    proposed: str = read.proposed_guid  # type: ignore[assignment]
    try:
        paired = halo.pair_site(read.pms_type, read.pms_id, pairing_code)
    except HaloPairingRefused:
        # A one-time code spent on an attempt whose answer was lost is refused on the retry: the
        # site then answers Get site status, and the pairing did happen.
        try:
            paired = halo.get_site(proposed)
        except HaloError:
            raise HaloPairingRefused(
                f"Halo refused the pairing code for practice {practice_id}: ask the practice for a new one") from None
    if paired.id != proposed:
        return Decided(read, False, f"Halo paired site {paired.id}, not the proposed {proposed}; nothing switched: "
                                    f"reconcile practice {practice_id} to see what Halo shows now")
    site = halo.get_site(proposed)
    if site.status is not SiteStatus.ACTIVE:
        return Decided(read, False, f"site {proposed} is paired but {site.status}, not active; nothing switched")
    with unit_of_work() as store:
        practice = _current(store, read)
        _switch(store, practice, site=site, identifiers=dict(practice.proposed_identifiers or practice.identifiers),
                reason="paired", detail=f"paired by {actor}", now=now,
                halo_answer={"site_check": {"guid": proposed, "paired": True, "site": site.summary()}},
                actor=actor, note=note, decision=DecisionAction.PAIRED)
        store.commit()
        log.info("site_paired", practice_id=practice_id, guid=proposed)
        return Decided(store.practice(practice_id), True)


def reject(store: Store, *, practice_id: int, now: datetime, actor: str, note: str | None = None) -> Practice:
    """Keep the current GUID; remember the rejected proposal so it does not ticket again."""
    practice = _held(store, practice_id)
    proposed: str = practice.proposed_guid  # type: ignore[assignment]
    rejected = fingerprint(proposed, normalise_identifiers(practice.proposed_identifiers or {}))
    ticket_id = _held_ticket_id(store, practice)
    audit = _audit(store, practice, action=Action.NONE, new_guid=proposed, detail=f"rejected by {actor}", now=now,
                   actor=actor, note=note)
    _decided(store, DecisionAction.REJECTED, actor=actor, note=note, now=now, practice_id=practice_id,
             ticket_id=ticket_id, reconciliation=audit,
             detail=f"kept {practice.halo_guid}; rejected the proposed {proposed}")
    store.write_practice(practice, {
        "state": PracticeState.ACTIVE,
        "proposed_guid": None,
        "proposed_identifiers": None,
        "rejected_fingerprint": rejected,
        "updated_at": now,
    })
    store.resolve_tickets(practice_id=practice_id, reasons=HELD_REASONS, now=now)
    store.discard_approvals(practice_id)
    log.info("change_rejected", practice_id=practice_id, proposed_guid=proposed)
    return store.practice(practice_id)


def set_autoswitch(store: Store, *, paused: bool, now: datetime, actor: str, note: str | None = None) -> None:
    reason = f"{'paused' if paused else 'resumed'} by {actor}" + (f": {note}" if note else "")
    store.set_flag(AUTOSWITCH_PAUSED, paused, now=now, reason=reason[:512])
    if not paused:
        store.resolve_tickets(practice_id=None, reasons=[TicketReason.MASS_CHANGE], now=now)
    _decided(store, DecisionAction.PAUSED if paused else DecisionAction.RESUMED, actor=actor, note=note, now=now,
             detail="automatic switching paused" if paused else "automatic switching resumed")
    log.info("autoswitch_paused" if paused else "autoswitch_resumed", reason=reason)


def record_take_over(store: Store, *, practice_id: int, token: str | None, now: datetime, actor: str,
                     note: str | None = None) -> None:
    """An operator ended another run's claim on the practice (``reconcile --now --take-over``)."""
    detail = (f"took over the claim of run {token}" if token else "took over: no run held the practice")
    _decided(store, DecisionAction.TAKEN_OVER, actor=actor, note=note, now=now, practice_id=practice_id,
             detail=detail)
    log.warning("claim_taken_over", practice_id=practice_id, token=token, actor=actor)


def record_operator_change(store: Store, action: DecisionAction, *, operator: str, now: datetime, actor: str,
                           note: str | None = None, detail: str | None = None) -> None:
    """An admin added, removed, disabled, enabled, reset or unlocked an operator: one decision row,
    in the caller's unit of work (beside the change itself), naming the operator acted on."""
    said = f"operator {operator}" + (f": {detail}" if detail else "")
    _decided(store, action, actor=actor, note=note, now=now, detail=said)


def acknowledge_ticket(store: Store, *, ticket_id: int, now: datetime, actor: str, note: str | None = None) -> Ticket:
    """Someone is on it: the ticket stays unresolved, with their name on the acknowledgement."""
    ticket = store.acknowledge_ticket(ticket_id, now=now)
    _decided(store, DecisionAction.ACKNOWLEDGED, actor=actor, note=note, now=now, practice_id=ticket.practice_id,
             ticket_id=ticket.id, detail=f"acknowledged {ticket.kind} / {ticket.reason}")
    return ticket


def resolve_ticket(store: Store, *, ticket_id: int, now: datetime, actor: str, note: str | None = None) -> Ticket:
    """Resolved by hand: the condition may come back, and then the ticket opens anew."""
    ticket = store.resolve_ticket(ticket_id, now=now)
    _decided(store, DecisionAction.RESOLVED, actor=actor, note=note, now=now, practice_id=ticket.practice_id,
             ticket_id=ticket.id, detail=f"resolved {ticket.kind} / {ticket.reason} by hand")
    return ticket

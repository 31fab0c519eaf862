"""People in the loop: approve or reject a held change, pause or resume automatic switching.

Each function works in the caller's unit of work (``Store``) and leaves the commit to it, so the
decision, its audit record and the tickets it resolves land together.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from models import Action, Practice, PracticeState, Reconciliation, TicketReason, Trigger, Verdict
from models.guard import AUTOSWITCH_PAUSED
from reconciler.core.classify import fingerprint
from reconciler.core.errors import InvalidState
from reconciler.core.identifiers import normalise_identifiers
from reconciler.usecases.ports import Store

log = structlog.get_logger()

HELD_REASONS = (TicketReason.BUSINESS_CHANGE, TicketReason.INFRASTRUCTURE_CHANGE)


def _held(store: Store, practice_id: int) -> Practice:
    practice = store.practice(practice_id)
    if practice.state != PracticeState.HELD or not practice.proposed_guid:
        raise InvalidState(f"practice {practice_id} has no held change (state {practice.state})")
    return practice


def _audit(store: Store, practice: Practice, *, action: Action, new_guid: str, detail: str, now: datetime) -> None:
    store.add_audit(Reconciliation(
        practice_id=practice.id,  # type: ignore[arg-type]
        trigger=Trigger.MANUAL,
        started_at=now,
        finished_at=now,
        duration_ms=0,
        verdict=practice.last_verdict or Verdict.BUSINESS_CHANGE,
        action=action,
        old_guid=practice.halo_guid,
        new_guid=new_guid,
        detail=detail,
    ))


def approve(store: Store, *, practice_id: int, now: datetime) -> Practice:
    """Switch a held practice to its proposed GUID; the proposal's identifiers become the baseline."""
    practice = _held(store, practice_id)
    new_guid: str = practice.proposed_guid  # type: ignore[assignment]
    identifiers = dict(practice.proposed_identifiers or practice.identifiers)
    old_guid = practice.halo_guid
    _audit(store, practice, action=Action.SWITCHED if new_guid != old_guid else Action.MARKED_VERIFIED,
           new_guid=new_guid, detail="approved by an operator", now=now)
    store.write_practice(practice, {
        "halo_guid": new_guid,
        "identifiers": identifiers,
        "identifiers_normalised": normalise_identifiers(identifiers),
        "practice_name": str(identifiers.get("practice_name") or practice.practice_name),
        "state": PracticeState.ACTIVE,
        "proposed_guid": None,
        "proposed_identifiers": None,
        "rejected_fingerprint": None,
        "last_verified_at": now,
        "updated_at": now,
    })
    if new_guid != old_guid:
        store.switch_history(practice, new_guid, reason="approved", now=now)
    store.resolve_tickets(practice_id=practice_id, reasons=HELD_REASONS, now=now)
    log.info("change_approved", practice_id=practice_id, old_guid=old_guid, new_guid=new_guid)
    return store.practice(practice_id)


def reject(store: Store, *, practice_id: int, now: datetime) -> Practice:
    """Keep the current GUID; remember the rejected proposal so it does not ticket again."""
    practice = _held(store, practice_id)
    proposed: str = practice.proposed_guid  # type: ignore[assignment]
    rejected = fingerprint(proposed, normalise_identifiers(practice.proposed_identifiers or {}))
    _audit(store, practice, action=Action.NONE, new_guid=proposed, detail="rejected by an operator", now=now)
    store.write_practice(practice, {
        "state": PracticeState.ACTIVE,
        "proposed_guid": None,
        "proposed_identifiers": None,
        "rejected_fingerprint": rejected,
        "updated_at": now,
    })
    store.resolve_tickets(practice_id=practice_id, reasons=HELD_REASONS, now=now)
    log.info("change_rejected", practice_id=practice_id, proposed_guid=proposed)
    return store.practice(practice_id)


def set_autoswitch(store: Store, *, paused: bool, now: datetime, reason: str) -> None:
    store.set_flag(AUTOSWITCH_PAUSED, paused, now=now, reason=reason)
    if not paused:
        store.resolve_tickets(practice_id=None, reasons=[TicketReason.MASS_CHANGE], now=now)
    log.info("autoswitch_paused" if paused else "autoswitch_resumed", reason=reason)

"""People in the loop: approve or reject a held change, pause or resume automatic switching."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import Session

from models import Action, Practice, PracticeState, Reconciliation, TicketReason, Trigger, Verdict
from models.guard import AUTOSWITCH_PAUSED, ControlFlag
from reconciler.adapters import store, tickets
from reconciler.core.classify import fingerprint
from reconciler.core.identifiers import normalise_identifiers
from reconciler.usecases.reconcile import _switch_history, _write_practice, set_flag
from reconciler.core.errors import InvalidState

log = structlog.get_logger()

HELD_REASONS = (TicketReason.BUSINESS_CHANGE, TicketReason.INFRASTRUCTURE_CHANGE)


def _held(session: Session, practice_id: int) -> Practice:
    practice = store.get_practice(session, practice_id=practice_id)
    if practice.state != PracticeState.HELD or not practice.proposed_guid:
        raise InvalidState(f"practice {practice_id} has no held change (state {practice.state})")
    return practice


def _audit(session: Session, practice: Practice, *, action: Action, new_guid: str, detail: str, now: datetime) -> None:
    session.add(
        Reconciliation(
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
        )
    )


def approve(session: Session, *, practice_id: int, now: datetime) -> Practice:
    """Switch a held practice to its proposed GUID; the proposal's identifiers become the baseline."""
    practice = _held(session, practice_id)
    new_guid = practice.proposed_guid
    identifiers = dict(practice.proposed_identifiers or practice.identifiers)
    old_guid = practice.halo_guid
    values = {
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
    }
    _audit(session, practice, action=Action.SWITCHED if new_guid != old_guid else Action.MARKED_VERIFIED,
           new_guid=new_guid, detail="approved by an operator", now=now)  # type: ignore[arg-type]
    _write_practice(session, practice, values)
    if new_guid != old_guid:
        _switch_history(session, practice, new_guid, reason="approved", now=now)  # type: ignore[arg-type]
    tickets.resolve_where(session, practice_id=practice_id, reasons=HELD_REASONS, now=now)
    log.info("change_approved", practice_id=practice_id, old_guid=old_guid, new_guid=new_guid)
    session.flush()
    session.refresh(practice)
    return practice


def reject(session: Session, *, practice_id: int, now: datetime) -> Practice:
    """Keep the current GUID; remember the rejected proposal so it does not ticket again."""
    practice = _held(session, practice_id)
    rejected = fingerprint(practice.proposed_guid, normalise_identifiers(practice.proposed_identifiers or {}))
    _audit(session, practice, action=Action.NONE, new_guid=practice.proposed_guid,  # type: ignore[arg-type]
           detail="rejected by an operator", now=now)
    _write_practice(
        session,
        practice,
        {
            "state": PracticeState.ACTIVE,
            "proposed_guid": None,
            "proposed_identifiers": None,
            "rejected_fingerprint": rejected,
            "updated_at": now,
        },
    )
    tickets.resolve_where(session, practice_id=practice_id, reasons=HELD_REASONS, now=now)
    log.info("change_rejected", practice_id=practice_id, proposed_guid=practice.proposed_guid)
    session.flush()
    session.refresh(practice)
    return practice


def autoswitch_paused(session: Session) -> ControlFlag | None:
    flag = session.get(ControlFlag, AUTOSWITCH_PAUSED)
    return flag if flag is not None and flag.value == "true" else None


def set_autoswitch(session: Session, *, paused: bool, now: datetime, reason: str) -> None:
    set_flag(session, AUTOSWITCH_PAUSED, paused, now=now, reason=reason)
    if not paused:
        tickets.resolve_where(session, practice_id=None, reasons=[TicketReason.MASS_CHANGE], now=now)
    log.info("autoswitch_paused" if paused else "autoswitch_resumed", reason=reason)

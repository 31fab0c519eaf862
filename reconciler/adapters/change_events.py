"""Change events: ``practice.guid_changed`` and ``practice.held``, beside the ticket events.

Their rows are made here and written by the store in the same transaction as the change they
describe (``SqlStore.switch_history`` for every GUID change, automatic, approved or paired, folded
into the new period's INSERT on PostgreSQL; ``SqlStore.apply_change`` for every hold), as outbox
rows for the webhook target: the same table, signing, retries and de-duplication as ticket
events (``reconciler.adapters.outbox``). A rollback takes the event with the change; a crash after
the commit loses neither. The event id (``practice-{id}-guid-...`` / ``practice-{id}-held-...``) is
fixed when the row is written, so every retry carries the same one.

The body (``webhook.encode`` adds ``id``)::

    {"event", "id", "at", "practice": {...the practice JSON...}, "old_guid", "new_guid", "reason"}

``reason``: ``infrastructure_change``, ``approved`` or ``paired`` for a change; for a hold, the
verdict that held it (``new_guid`` is then the proposed GUID).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from models.outbox import OutboxEvent, OutboxStatus, OutboxTarget
from reconciler import logs

log = logs.get_logger()

GUID_CHANGED = "practice.guid_changed"
HELD = "practice.held"
_INSERT_EVENT = insert(OutboxEvent.__table__)  # type: ignore[attr-defined]


def _row(*, kind: str, event: str, at: datetime, practice: dict[str, Any], old_guid: str | None,
         new_guid: str | None, reason: str) -> dict[str, Any]:
    # Unique by construction (no read to de-duplicate): one row per change, whatever retries it.
    event_id = f"practice-{practice['id']}-{kind}-{uuid.uuid4().hex}"
    payload = {"event": event, "at": at.isoformat(), "practice": practice, "old_guid": old_guid,
               "new_guid": new_guid, "reason": reason}
    return {"event_id": event_id, "event_type": event, "target": OutboxTarget.WEBHOOK, "payload": payload,
            "created_at": at, "next_attempt_at": at, "attempts": 0, "status": OutboxStatus.PENDING}


def add(session: Session, row: dict[str, Any]) -> None:
    """Write an event ``guid_changed`` or ``held`` made: a Core INSERT (built once) in the change's
    transaction. Nothing reads the row back through this session, so no ORM object is built and
    flushed for it (a switch's CPU, docs/BENCHMARKS.md "reconcile")."""
    session.execute(_INSERT_EVENT, row)
    written(row)


def written(row: dict[str, Any]) -> None:
    """The log line of an event written (by ``add``, or by a statement that folds its INSERT). At
    DEBUG: the row itself is the record (``outbox list``, the console's outbox page), and the change
    has its own lines at INFO (``guid_switched``, ``reconcile_finished``); a line costs a switch ~1%
    of its CPU."""
    log.debug("change_event_written", event_type=row["event_type"], event_id=row["event_id"],
             reason=row["payload"]["reason"])


def guid_changed(*, practice: dict[str, Any], old_guid: str | None, new_guid: str, reason: str,
                 now: datetime) -> dict[str, Any]:
    """The outbox row of a practice's GUID change; ``practice`` is its JSON after the change."""
    return _row(kind="guid", event=GUID_CHANGED, at=now, practice=practice, old_guid=old_guid, new_guid=new_guid,
                reason=reason)


def held(*, practice: dict[str, Any], proposed_guid: str | None, reason: str, now: datetime) -> dict[str, Any]:
    """The outbox row of a change to ``proposed_guid`` held for a person, for ``reason`` (the verdict)."""
    return _row(kind="held", event=HELD, at=now, practice=practice, old_guid=practice["halo_guid"],
                new_guid=proposed_guid, reason=reason)

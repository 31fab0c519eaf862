"""``practice.guid_changed`` and ``practice.held``: written with the change, in its transaction, and
delivered signed through the same outbox as ticket events (PRODUCT.md, "Change events")."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlmodel import select

from models import PmsType, PracticeState
from models.outbox import OutboxEvent
from reconciler.core.change import PracticeChange
from reconciler.core.errors import Conflict
from reconciler.adapters import outbox, webhook
from reconciler.adapters.store import SqlStore
from worker import db

SECRET = "change-events-secret-81c2"


def events(kind: str | None = None) -> list[dict]:
    with db.new_session() as session:
        rows = session.exec(select(OutboxEvent).order_by(OutboxEvent.id)).all()
        return [{"id": r.event_id, **r.payload} for r in rows
                if r.event_type.startswith("practice.") and (kind is None or r.event_type == kind)]


def test_an_automatic_switch_writes_one_guid_changed_event(world):
    pid = world.onboard(pms_id="Z1", pms_type=PmsType.ZEDMED)
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.ZEDMED, "Z1")

    world.reconcile(pid)
    world.reconcile(pid)  # unchanged: no event

    [event] = events()
    assert event["event"] == "practice.guid_changed"
    assert (event["old_guid"], event["new_guid"], event["reason"]) == (old, new, "infrastructure_change")
    practice = event["practice"]
    assert (practice["id"], practice["halo_guid"], practice["state"]) == (pid, new, "active")
    assert [h["guid"] for h in practice["guid_history"]] == [old, new]
    assert event["id"].startswith(f"practice-{pid}-guid-") and event["at"]


def test_a_hold_and_its_approval(world):
    pid = world.onboard("Halo Clinic South", pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    world.sim.rename(new, "Another Practice Pty Ltd")

    world.reconcile(pid)
    world.reconcile(pid)  # held again for the same proposal: no second event
    [held] = events()
    assert (held["event"], held["old_guid"], held["new_guid"], held["reason"]) == (
        "practice.held", old, new, "business_change")
    assert (held["practice"]["state"], held["practice"]["proposed_guid"]) == ("held", new)

    assert world.approve(pid).done
    changed = events("practice.guid_changed")
    assert [(e["old_guid"], e["new_guid"], e["reason"]) for e in changed] == [(old, new, "approved")]
    assert changed[0]["practice"]["state"] == "active"


def test_pairing_writes_a_hold_then_a_paired_change(world):
    pid = world.onboard(pms_id="BP2")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP2")
    world.sim.unpair(new)
    world.reconcile(pid)
    world.sim.set_pairing_code(new, "RIGHT-CODE")
    assert world.pair(pid, "RIGHT-CODE").done
    assert [(e["event"], e["new_guid"], e["reason"]) for e in events()] == [
        ("practice.held", new, "infrastructure_change"), ("practice.guid_changed", new, "paired")]
    assert events()[1]["old_guid"] == old


def test_the_event_rolls_back_with_its_change(world):
    pid = world.onboard(pms_id="Z2", pms_type=PmsType.ZEDMED)
    now = datetime.now(UTC)
    with db.new_session() as session:
        store = SqlStore(session)
        practice = store.practice(pid)
        store.write_practice(practice, {"halo_guid": "7c9e6679-7425-40de-944b-e07fc1f90ae7"})
        store.switch_history(practice, "7c9e6679-7425-40de-944b-e07fc1f90ae7", reason="infrastructure_change",
                             now=now)
        assert len(session.exec(select(OutboxEvent)).all()) == 1  # written, in this transaction
        session.rollback()
    assert events() == []
    assert world.practice(pid).state == PracticeState.ACTIVE and len(world.history(pid)) == 1


def test_a_lost_write_leaves_nothing_of_itself_in_the_next_event(world):
    """A run's write that lost its race is rolled back; the event the same unit of work writes next
    (its retry holding the practice, say) describes the practice as it is, not the lost write."""
    pid = world.onboard(pms_id="Z3", pms_type=PmsType.ZEDMED)
    guid = world.practice(pid).halo_guid
    lost, proposed = "7c9e6679-7425-40de-944b-e07fc1f90ae7", "9b2d6a1e-3f7c-4d2a-8e1b-5c6d7e8f9a0b"
    now = datetime.now(UTC)
    with db.new_session() as session:
        store = SqlStore(session)
        stale = store.practice_for_run(pid, switches_since=now)[0]
        store.rollback()
        with db.new_session() as other:  # another run wins meanwhile: the version moves on
            SqlStore(other).write_practice(SqlStore(other).practice(pid), {"updated_at": now})
            other.commit()
        with pytest.raises(Conflict):
            store.write_practice(stale, {"halo_guid": lost})
        store.rollback()
        fresh = store.practice_for_run(pid, switches_since=now)[0]
        store.rollback()
        store.apply_change(fresh, PracticeChange(values={"state": PracticeState.HELD, "proposed_guid": proposed}),
                           now=now)
        store.commit()
    [held] = events("practice.held")
    assert (held["practice"]["halo_guid"], held["practice"]["proposed_guid"]) == (guid, proposed)


def test_change_events_are_delivered_signed_like_ticket_events(world):
    pid = world.onboard(pms_id="Z3", pms_type=PmsType.ZEDMED)
    world.sim.change_guid(PmsType.ZEDMED, "Z3")
    world.reconcile(pid)
    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(500 if len(received) == 1 else 204)  # the first attempt fails

    transport = httpx.MockTransport(receiver)
    first = outbox.deliver_pending(db.new_session, url="https://app.example/hook", secret=SECRET, transport=transport)
    later = datetime.now(UTC) + outbox.RETRY_MAX
    second = outbox.deliver_pending(db.new_session, url="https://app.example/hook", secret=SECRET,
                                    transport=transport, now=lambda: later)
    assert (first.failed, second.sent) == (1, 1)
    a, b = received
    assert a.headers[webhook.ID_HEADER] == b.headers[webhook.ID_HEADER]  # the same id: the receiver de-duplicates
    assert webhook.verify(SECRET, b.content, b.headers[webhook.TIMESTAMP_HEADER], b.headers[webhook.SIGNATURE_HEADER])
    body = httpx.Response(200, content=b.content).json()
    assert body["event"] == "practice.guid_changed" and body["id"] == b.headers[webhook.ID_HEADER]


@pytest.mark.parametrize("policy", ["hold"])
def test_the_hold_policy_holds_an_infrastructure_change_with_an_event(world, policy):
    pid = world.onboard(pms_id="Z4", pms_type=PmsType.ZEDMED)
    new = world.sim.change_guid(PmsType.ZEDMED, "Z4")
    world.reconcile(pid, infrastructure=policy)
    [event] = events()
    assert (event["event"], event["new_guid"], event["reason"]) == ("practice.held", new, "infrastructure_change")

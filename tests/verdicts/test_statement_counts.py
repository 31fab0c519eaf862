"""How many SQL statements one reconciliation costs, through the real use case and store.

Counts are deterministic (unlike times), so the suite holds them: an ``unchanged`` verification at
most 4 statements, a switch at most 5 on PostgreSQL and 6 on SQLite (issue 16's 6, the
``practice.guid_changed`` outbox row of issue 21 included). The mass-change guard's count comes with
the run's one read; on PostgreSQL the event's INSERT and the new GUID period's are one statement
(SQLite has no data-modifying CTE). The history the event carries comes back from the closing
UPDATE's RETURNING, not from a read. Counted with SQLAlchemy's ``before_cursor_execute``
on the engine the store uses, on the embedded SQLite and on PostgreSQL 15.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from models import Action, PmsType, TicketReason, TicketStatus, Verdict
from models.outbox import OutboxEvent, OutboxStatus, OutboxTarget
from tests.utils.sql import counted_statements
from worker import db
from worker.config import get_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, monkeypatch):
    if request.param == "postgresql":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()
        db.reset_engine()
        db.upgrade_schema()  # a production database is migrated by `db upgrade`, not on first use
    yield request.param
    db.reset_engine()


def test_unchanged_verification_takes_at_most_four_statements(database, world):
    pid = world.onboard(pms_id="BP1")
    world.clock.advance(hours=2)
    with counted_statements() as statements:
        result = world.reconcile(pid)
    assert (result.verdict, result.action) == (Verdict.UNCHANGED, Action.MARKED_VERIFIED)
    assert len(statements) <= 4, statements
    # What remains: the one read, the practice's UPDATE, the audit row.
    assert [s.split()[0] for s in statements] == ["SELECT", "UPDATE", "INSERT"], statements
    assert world.practice(pid).last_verified_at == world.clock.now


def test_switch_takes_at_most_five_statements_on_postgresql_and_six_on_sqlite(database, world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    with counted_statements() as statements:
        result = world.reconcile(pid)
    assert (result.verdict, result.action) == (Verdict.INFRASTRUCTURE_CHANGE, Action.SWITCHED)
    assert len(statements) <= (5 if database == "postgresql" else 6), statements
    assert [s.split()[0] for s in statements].count("SELECT") == 1, statements  # the guard came with the read
    # The change event, in its own INSERT on SQLite, folded into the new period's on PostgreSQL.
    events = [s for s in statements if "INSERT INTO outbox_events" in s]
    assert len(events) == 1 and events[0].startswith(
        "WITH opened AS" if database == "postgresql" else "INSERT INTO outbox_events"), statements
    assert world.practice(pid).halo_guid == new
    assert world.history(pid) == [(old, "onboarded"), (new, "infrastructure_change")]
    # Either way the same row: the event carries the history as written, and waits for the webhook.
    with db.new_session() as session:
        [row] = session.exec(select(OutboxEvent).where(OutboxEvent.event_type == "practice.guid_changed")).all()
    assert (row.status, row.target, row.attempts, row.delivered_at) == (OutboxStatus.PENDING, OutboxTarget.WEBHOOK,
                                                                         0, None)
    assert (row.payload["old_guid"], row.payload["new_guid"], row.payload["reason"]) == (old, new,
                                                                                        "infrastructure_change")
    assert [h["guid"] for h in row.payload["practice"]["guid_history"]] == [old, new]
    assert row.event_id.startswith(f"practice-{pid}-guid-") and row.created_at == row.next_attempt_at


def test_an_open_ticket_costs_its_resolution_and_is_still_resolved(database, world):
    """The ticket-free fast path must not skip a ticket that exists: an open forbidden_persists is
    resolved by the next unchanged verification with no 403s, at the price of its own statements."""
    pid = world.onboard(pms_id="BP1")
    guid = world.practice(pid).halo_guid
    world.reconcile(pid)
    world.forbidden[(pid, guid)] = 3
    assert world.reconcile(pid).ticket_id is not None
    world.forbidden[(pid, guid)] = 0
    with counted_statements() as statements:
        assert world.reconcile(pid).verdict == Verdict.UNCHANGED
    [ticket] = world.tickets()
    assert (ticket.reason, ticket.status) == (TicketReason.FORBIDDEN_PERSISTS, TicketStatus.RESOLVED)
    assert len(statements) > 4, statements

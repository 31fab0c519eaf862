"""How many SQL statements one reconciliation costs, through the real use case and store.

Counts are deterministic (unlike times), so the suite holds them: an ``unchanged`` verification at
most 4 statements, a switch at most 6 (issue 16's 6, the ``practice.guid_changed`` outbox row of
issue 21 included). The mass-change guard's count and the GUID periods come with the run's one
read. On PostgreSQL the whole write of an unchanged run or a switch is one statement (data-modifying
CTEs: ``SqlStore.write_run``), so either is two statements; SQLite has no data-modifying CTE and
takes them one by one (3 and 6), the history the event carries coming back from the closing
UPDATE's RETURNING. The rows are the same either way. Counted with SQLAlchemy's
``before_cursor_execute`` on the engine the store uses, on the embedded SQLite and on PostgreSQL 15.
"""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from models import Action, GuidHistory, Practice, PmsType, Reconciliation, TicketReason, TicketStatus, Verdict
from models.outbox import OutboxEvent, OutboxStatus, OutboxTarget
from reconciler.adapters.store import SqlStore
from tests.utils.sql import counted_statements
from worker import db


def test_unchanged_verification_takes_at_most_four_statements(database, world):
    pid = world.onboard(pms_id="BP1")
    world.clock.advance(hours=2)
    with counted_statements() as statements:
        result = world.reconcile(pid)
    assert (result.verdict, result.action) == (Verdict.UNCHANGED, Action.MARKED_VERIFIED)
    assert len(statements) <= 4, statements
    # The one read, then the practice's UPDATE and the audit row: one statement on PostgreSQL.
    assert [s.split()[0] for s in statements] == (["SELECT", "WITH"] if database == "postgresql" else
                                                  ["SELECT", "UPDATE", "INSERT"]), statements
    assert world.practice(pid).last_verified_at == world.clock.now


def test_switch_takes_two_statements_on_postgresql_and_six_on_sqlite(database, world):
    pid = world.onboard(pms_id="BP1")
    old = world.practice(pid).halo_guid
    new = world.sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    with counted_statements() as statements:
        result = world.reconcile(pid)
    assert (result.verdict, result.action) == (Verdict.INFRASTRUCTURE_CHANGE, Action.SWITCHED)
    assert len(statements) == (2 if database == "postgresql" else 6), statements
    assert [s.split()[0] for s in statements].count("SELECT") == 1, statements  # the guard came with the read
    # The change event, in its own INSERT on SQLite, in the write's one statement on PostgreSQL.
    events = [s for s in statements if "INSERT INTO outbox_events" in s]
    assert len(events) == 1 and events[0].startswith(
        "WITH written AS" if database == "postgresql" else "INSERT INTO outbox_events"), statements
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


def _written(pid: int, names: dict[str, str]) -> str:
    """Every row a run wrote about practice ``pid`` (the practice, its GUID periods, its change
    events, its audit), with the values that name this practice (``names``) and the ids and times
    no two runs share taken out: what two runs of the same verdict must write alike."""
    drop = {"id", "practice_id", "event_id", "duration_ms"}

    def scrub(value):  # noqa: ANN001, ANN202
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items() if k not in drop}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    with db.new_session() as session:
        rows = {
            "practice": session.get(Practice, pid).model_dump(),
            "periods": [h.model_dump() for h in session.exec(select(GuidHistory).where(GuidHistory.practice_id == pid)
                                                              .order_by(GuidHistory.id))],
            "events": [e.model_dump() for e in session.exec(select(OutboxEvent).order_by(OutboxEvent.id))
                       if e.payload["practice"]["id"] == pid],
            "audit": [r.model_dump() for r in session.exec(select(Reconciliation).where(Reconciliation.practice_id == pid)
                                                           .order_by(Reconciliation.id))],
        }
    text = json.dumps(scrub(rows), default=str, sort_keys=True)
    for value, name in names.items():
        text = text.replace(value, name)
    return text


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # SQLite has only the one-by-one path
def test_the_one_statement_writes_what_the_statements_one_by_one_write(database, world, monkeypatch):
    """A switch and then an unchanged run, each through ``write_run``'s one statement (PostgreSQL) and
    through the statements one by one (which SQLite and every other change take): the same rows."""
    one_by_one = SqlStore.write_run

    def without_periods(self, *args, **kwargs):  # noqa: ANN001, ANN202  (no periods: the one-by-one path)
        return one_by_one(self, *args, **{**kwargs, "periods": None})

    seen = []
    for pms_id, patched in (("BP1", False), ("BP2", True)):
        pid = world.onboard(name="Clinic", pms_id=pms_id)
        old = world.practice(pid).halo_guid
        new = world.sim.change_guid(PmsType.BEST_PRACTICE, pms_id)
        if patched:
            monkeypatch.setattr(SqlStore, "write_run", without_periods)
        with counted_statements() as statements:
            assert world.reconcile(pid).action == Action.SWITCHED
            world.clock.advance(hours=2)
            assert world.reconcile(pid).action == Action.MARKED_VERIFIED
        assert len(statements) == (4 if not patched else 8), statements  # (2 + 2) or (5 + 3)
        monkeypatch.setattr(SqlStore, "write_run", one_by_one)
        seen.append(_written(pid, {old: "<old>", new: "<new>", pms_id: "<pms>"}))
        world.clock.advance(hours=-2)  # the second practice's runs at the same instants
    assert seen[0] == seen[1]

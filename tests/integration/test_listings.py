"""Lists at fleet scale: keyset pages over practices, tickets and the audit trail, on SQLite and a real
PostgreSQL. Walking every page gives every row exactly once, in order, whatever the filters; the
counts by state and the names beside ids are the database's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select

from models import Action, OperatorDecision, PracticeState, Reconciliation, TicketKind, TicketReason, TicketStatus, Trigger, Verdict
from reconciler.adapters import listings, people, tickets
from reconciler.adapters.store import SqlStore
from reconciler.core.errors import BadInput
from reconciler.core.vocabulary import OPERATOR_CHANGES
from worker import admin, db
from worker.config import get_settings

pytestmark = pytest.mark.integration  # a real PostgreSQL on loopback beside SQLite

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'lists.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    db.reset_engine()
    db.upgrade_schema()
    yield request.param
    db.reset_engine()


def seed_practices(n: int) -> list[int]:
    ids = []
    with db.new_session() as session:
        for i in range(n):
            made = SqlStore(session).add_practice(pms_type="BestPractice", pms_id=f"BP{i}",
                                      halo_guid=f"00000000-0000-4000-8000-{i:012d}",
                                      identifiers={"practice_name": f"{'Bondi' if i % 3 == 0 else 'Carlton'} Clinic {i}"},
                                      now=NOW - timedelta(days=10))
            made.state = PracticeState.HELD if i % 5 == 0 else (PracticeState.BACKOFF if i % 7 == 0 else PracticeState.ACTIVE)
            ids.append(made.id)
        session.commit()
    return ids


def walk(fetch, limit: int) -> list:
    seen, cursor, pages = [], None, 0
    while True:
        page = fetch(cursor=cursor, limit=limit)
        assert len(page.items) <= limit
        seen.extend(page.items)
        pages += 1
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit
        cursor = page.next_cursor
        assert pages < 1000


def test_practice_pages_cover_every_practice_once_by_state_and_search(database):
    ids = seed_practices(53)
    with db.new_session() as session:
        every = walk(lambda **kw: listings.practices_page(session, **kw), 10)
        assert [p.id for p in every] == sorted(ids)
        held = walk(lambda **kw: listings.practices_page(session, state=PracticeState.HELD, **kw), 4)
        assert [p.id for p in held] == [pid for i, pid in enumerate(ids) if i % 5 == 0]
        bondi = walk(lambda **kw: listings.practices_page(session, text="bondi", **kw), 7)
        assert [p.id for p in bondi] == [pid for i, pid in enumerate(ids) if i % 3 == 0]
        by_guid = listings.practices_page(session, text="00000000-0000-4000-8000-000000000007")
        assert [p.id for p in by_guid.items] == [ids[7]] and by_guid.next_cursor is None

        counts = listings.count_practices_by_state(session)
        assert counts == {"held": 11, "backoff": 6, "active": 36}
        assert sum(listings.count_practices_by_state(session, text="bondi").values()) == len(bondi)
        assert listings.practice_names(session, ids=[ids[1], None, ids[1]]) == {ids[1]: "Carlton Clinic 1"}

        for bad in ("abc", "-1", "1" * 40):
            with pytest.raises(BadInput):
                listings.practices_page(session, cursor=bad)
        with pytest.raises(BadInput):
            listings.practices_page(session, limit=0)


def test_ticket_pages_keep_their_filters(database):
    ids = seed_practices(12)
    with db.new_session() as session:
        for pid in ids:
            SqlStore(session).open_ticket(kind=TicketKind.CONTACT_PRACTICE, reason=TicketReason.NOT_FOUND,
                                          practice_id=pid, detail="gone", now=NOW)
        SqlStore(session).open_ticket(kind=TicketKind.CONTACT_HALO_SUPPORT, reason=TicketReason.IP_NOT_ALLOWED,
                                      practice_id=None, detail="ip", now=NOW)
        session.commit()
        every = walk(lambda **kw: listings.tickets_page(session, statuses=tickets.UNRESOLVED, **kw), 5)
        assert len(every) == 13 and [t.id for t in every] == sorted(t.id for t in every)
        practice_kind = walk(lambda **kw: listings.tickets_page(
            session, statuses=[TicketStatus.OPEN], kind=TicketKind.CONTACT_PRACTICE, **kw), 5)
        assert len(practice_kind) == 12


def seed_audit(practice_ids: list[int]) -> None:
    """Reconciliations every minute, decisions every seventh minute at the same instant as one (the
    tie the order must break), and a reconciliation a decision wrote (listed once, as the decision)."""
    with db.new_session() as session:
        for minute in range(120):
            at = NOW - timedelta(minutes=minute)
            pid = practice_ids[minute % len(practice_ids)]
            action = Action.SWITCHED if minute % 10 == 0 else Action.MARKED_VERIFIED
            session.add(Reconciliation(practice_id=pid, trigger=Trigger.SWEEP, started_at=at, finished_at=at,
                                       verdict=Verdict.UNCHANGED, action=action))
            if minute % 7 == 0:
                session.add(OperatorDecision(at=at, actor="alice" if minute % 2 else "bob", action="acknowledged",
                                             practice_id=pid, note=f"m{minute}"))
                session.add(Reconciliation(practice_id=pid, trigger=Trigger.MANUAL, started_at=at, finished_at=at,
                                           verdict=Verdict.UNCHANGED, action=Action.MARKED_VERIFIED, actor="alice"))
        session.commit()


def whole_trail(session) -> list[people.AuditEntry]:
    """The trail the pages must add up to, read the plain way: every row, sorted here (newest first, a
    person's decision before the worker's row of the same instant, then the newer id first)."""
    worker = [(r.started_at, 1, r.id, people._reconciliation_entry(r))
              for r in session.exec(select(Reconciliation).where(col(Reconciliation.actor).is_(None))).all()]
    decided = [(d.at, 2, d.id, people._decision_entry(d)) for d in session.exec(select(OperatorDecision)).all()]
    return [entry for *_, entry in sorted(worker + decided, key=lambda row: row[:3], reverse=True)]


def test_audit_pages_equal_the_whole_trail_and_filter_by_actor_action_practice_and_dates(database):
    ids = seed_practices(5)
    seed_audit(ids)
    with db.new_session() as session:
        whole = whole_trail(session)
        assert len(whole) == 120 + 18
        for limit in (1, 7, 50):
            assert walk(lambda **kw: listings.audit_page(session, **kw), limit) == whole

        def only(**filters):
            return walk(lambda **kw: listings.audit_page(session, **filters, **kw), 6)

        assert only(actor="worker") == [e for e in whole if e.actor == "worker"]
        assert only(actor="alice") == [e for e in whole if e.actor == "alice"]
        assert only(action="switched") == [e for e in whole if e.action == "switched"]
        assert only(action="acknowledged") == [e for e in whole if e.action == "acknowledged"]
        assert only(practice_id=ids[2]) == [e for e in whole if e.practice_id == ids[2]]
        since, until = NOW - timedelta(minutes=60), NOW - timedelta(minutes=30)
        assert only(since=since, until=until) == [e for e in whole if since <= e.at < until]
        assert only(actor="bob", practice_id=ids[0], since=since) == [
            e for e in whole if e.actor == "bob" and e.practice_id == ids[0] and e.at >= since]

        for bad in ("nonsense", "Zm9v", listings.AuditKey(NOW.replace(tzinfo=None), 1, 1).encode()):
            with pytest.raises(BadInput):
                listings.audit_page(session, cursor=bad)


def seed_operator_changes() -> None:
    """An admin's changes to operators every eleventh minute (at the same instants as other rows), and a
    decision about a practice by the same admin between them."""
    changes = ["added", "disabled", "enabled", "password_reset", "unlocked", "role_changed", "removed"]
    with db.new_session() as session:
        for n, minute in enumerate(range(0, 120, 11)):
            session.add(OperatorDecision(at=NOW - timedelta(minutes=minute), actor="ada" if n % 3 else "root",
                                         action=changes[n % len(changes)], detail=f"operator op{n}"))
            session.add(OperatorDecision(at=NOW - timedelta(minutes=minute), actor="ada", action="paused",
                                         detail="autoswitch paused"))
        session.commit()


def test_operator_changes_only_keeps_the_changes_to_people_page_by_page(database):
    ids = seed_practices(5)
    seed_audit(ids)
    seed_operator_changes()
    with db.new_session() as session:
        whole = whole_trail(session)
        changes = [e for e in whole if e.action in OPERATOR_CHANGES]
        assert len(changes) == 11 and {e.action for e in changes} == set(OPERATOR_CHANGES)
        for limit in (1, 2, 4, 50):
            assert walk(lambda **kw: listings.audit_page(session, operator_changes=True, **kw), limit) == changes
        only = lambda **filters: walk(lambda **kw: listings.audit_page(session, operator_changes=True, **filters, **kw), 3)
        assert only(actor="ada") == [e for e in changes if e.actor == "ada"] != []
        assert only(action="disabled") == [e for e in changes if e.action == "disabled"] != []
        assert only(action="acknowledged") == only(actor="worker") == []  # not a change to an operator
        since = NOW - timedelta(minutes=50)
        assert only(since=since) == [e for e in changes if e.at >= since] != []
    page = admin.audit_listing(operator_changes=True, limit=4)
    assert page.items == changes[:4] and page.next_cursor is not None
    assert admin.audit(operator_changes=True, limit=100) == changes


def test_admin_listings_carry_names_counts_and_parse_their_input(database):
    ids = seed_practices(20)
    seed_audit(ids)
    page = admin.practices_listing(state="held", limit=3, counts=True)
    assert [p.state for p in page.items] == ["held"] * 3 and page.next_cursor is not None
    assert page.counts == {"held": 4, "backoff": 2, "active": 14} and page.total == 20
    audit = admin.audit_listing(actor="alice", since="2026-12-01", until="2026-12-01", limit=4)
    assert audit.items and all(e.actor == "alice" for e in audit.items)
    assert set(audit.names) == {e.practice_id for e in audit.items}
    assert admin.audit(limit=5, action="switched") == admin.audit_listing(action="switched", limit=5).items
    assert admin.parse_time_bound("2026-12-04", end=True) == datetime(2026, 12, 5, tzinfo=UTC)
    assert admin.parse_time_bound("2026-12-04T09:30") == datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    for bad in (lambda: admin.practices_listing(state="sleeping"), lambda: admin.parse_time_bound("yesterday")):
        with pytest.raises(BadInput):
            bad()


def test_cli_pages_with_limit_and_cursor_and_keeps_the_whole_list_without(database, capsys):
    from tests.utils.cli import run, run_json

    ids = seed_practices(23)
    seed_audit(ids)
    everything = run_json(capsys, "practices", "list")
    assert [p["id"] for p in everything] == ids  # no --limit: the whole list, as the contract says

    seen, cursor = [], None
    while True:
        code, out, err = run(capsys, "practices", "list", "--limit", "10", "--json", *(["--cursor", cursor] if cursor else []))
        assert code == 0, err
        seen += json.loads(out)
        more = [line for line in err.splitlines() if line.startswith("more: --cursor ")]
        if not more:
            break
        cursor = more[0].split()[-1]
    assert seen == everything

    held = run_json(capsys, "practices", "list", "--state", "held")
    assert [p["id"] for p in held] == [pid for i, pid in enumerate(ids) if i % 5 == 0]
    code, _, err = run(capsys, "practices", "list", "--state", "sleeping")
    assert code == 2 and "sleeping" in err
    code, _, err = run(capsys, "practices", "list", "--limit", "5", "--cursor", "not-a-cursor")
    assert code == 2 and "cursor" in err

    first = run_json(capsys, "audit", "--limit", "4")
    code, out, err = run(capsys, "audit", "--limit", "4", "--json")
    cursor = err.split()[-1]
    second = run_json(capsys, "audit", "--limit", "4", "--cursor", cursor)
    assert first + second == run_json(capsys, "audit", "--limit", "8")
    alice = run_json(capsys, "audit", "--actor", "alice", "--since", "2026-12-01")
    assert alice and {e["actor"] for e in alice} == {"alice"}
    code, _, err = run(capsys, "audit", "--since", "last tuesday")
    assert code == 2 and "date" in err

    seed_operator_changes()
    changes = run_json(capsys, "audit", "--operator-changes")
    assert len(changes) == 11 and {e["action"] for e in changes} <= set(OPERATOR_CHANGES)
    first = run_json(capsys, "audit", "--operator-changes", "--limit", "5")
    code, out, err = run(capsys, "audit", "--operator-changes", "--limit", "5", "--json")
    rest = run_json(capsys, "audit", "--operator-changes", "--limit", "100", "--cursor", err.split()[-1])
    assert first + rest == changes


def test_piped_tables_never_wrap_inside_a_value(database, capsys):
    from tests.utils.cli import run

    ids = seed_practices(3)
    with db.new_session() as session:
        SqlStore(session).open_ticket(kind=TicketKind.CONTACT_PRACTICE, reason=TicketReason.NOT_FOUND,
                                      practice_id=ids[1], detail="No active site carries this PMS ID any more; " * 4, now=NOW)
        session.commit()
    capsys.readouterr()  # the ticket's log line
    code, out, _ = run(capsys, "practices", "list")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1 + 3 + 1  # header, a line per practice, the count
    for i, line in enumerate(lines[1:4]):
        assert f"00000000-0000-4000-8000-{i:012d}" in line and line == line.rstrip()
    code, out, _ = run(capsys, "tickets", "list")
    [row] = [line for line in out.splitlines() if "not_found" in line]
    assert f"{ids[1]} Carlton Clinic 1" in row and row.count("No active site") == 4


def test_a_search_counts_up_to_its_cap_and_pages_whatever_it_matches(database, monkeypatch):
    ids = seed_practices(30)
    monkeypatch.setattr(listings, "SEARCH_COUNT_CAP", 8)
    with db.new_session() as session:
        # 20 Carlton practices: more than the cap, so the page walks the ids; 10 Bondi ones: fewer.
        carlton = walk(lambda **kw: listings.practices_page(session, text="carlton", **kw), 3)
        assert [p.id for p in carlton] == [pid for i, pid in enumerate(ids) if i % 3]
        bondi = walk(lambda **kw: listings.practices_page(session, text="bondi", **kw), 3)
        assert [p.id for p in bondi] == [pid for i, pid in enumerate(ids) if i % 3 == 0]
        assert sum(listings.count_practices_by_state(session, text="carlton", cap=8).values()) == 9
        assert sum(listings.count_practices_by_state(session, text="bondi clinic 2", cap=8).values()) == 3  # 21, 24, 27
        assert listings.practices_page(session, text="100%_").items == []  # LIKE's wildcards match themselves
    page = admin.practices_listing(text="carlton", counts=True, limit=5)
    assert page.capped and page.counts_cap == 8
    assert not admin.practices_listing(text="bondi clinic 2", counts=True).capped

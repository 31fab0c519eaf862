"""Lists at fleet scale: keyset pages against OFFSET, on 100,000 practices and 1,000,000 audit rows in a
real PostgreSQL 15 with the schema's own indexes (migrations up to head, 0009 included).

Seeds, with ``generate_series``: 100,000 practices (2% held, 3% backing off), 990,000 reconciliations
over 365 days (96% routine checks, 2% switches, 1% holds, 1% Halo unavailable), 10,000 people's
decisions by 20 operators, and 20,000 tickets. Then times each page the console and the command line
read (``reconciler.adapters.listings``, through SQLAlchemy, 50 rows a page, the median of 15 runs after
a warm-up) at the first page and deep in the list, and, in the same run, the naive page a list with
``?page=N`` reads: the same rows with ``OFFSET`` at the same depth. Each keyset page's plan is shown.

``python3 dev.py bench lists [--quick]`` (``--quick``: a tenth of the rows).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import or_, text
from sqlmodel import col, select

from bench.audit_year import explain
from bench.targets import record
from models import OperatorDecision, Practice, Reconciliation, Ticket
from reconciler.adapters import listings
from reconciler.adapters.listings import AuditKey
from reconciler.adapters.tickets import UNRESOLVED
from tests.utils.servers import start_postgres
from worker import db
from worker.config import get_settings
from worker.logging import configure_logging

PRACTICES = 100_000
AUDIT_ROWS = 1_000_000
DECISIONS = 10_000
TICKETS = 20_000
PAGE = 50
REPEAT = 15
TARGET_MS = 100.0
DATABASE = "lists"

SEED_PRACTICES = """
INSERT INTO practices (pms_type, pms_id, halo_guid, practice_name, identifiers, identifiers_normalised, state,
                       last_verified_at, next_attempt_at, backoff_attempts, created_at, updated_at, version)
SELECT 'BestPractice', 'BP' || g, md5(g::text)::uuid::text, 'Clinic ' || g, '{{}}', '{{}}',
       CASE WHEN g % 50 = 0 THEN 'held' WHEN g % 33 = 0 THEN 'backoff' ELSE 'active' END,
       now() - (g % 86400) * interval '1 second', NULL, 0, now() - interval '400 days', now(), 1
FROM generate_series(1, {practices}) AS g
"""

# Ids increase with started_at, as a table written day by day does.
SEED_RECONCILIATIONS = """
INSERT INTO reconciliations (practice_id, trigger, started_at, finished_at, duration_ms, verdict, action,
                             old_guid, new_guid, ticket_id, halo_calls, halo_answer, detail)
SELECT 1 + (g % {practices}), 'sweep', t, t + interval '40 milliseconds', 40,
       CASE WHEN g % 100 < 96 THEN 'unchanged' WHEN g % 100 < 98 THEN 'infrastructure_change'
            WHEN g % 100 = 98 THEN 'business_change' ELSE 'halo_unavailable' END,
       CASE WHEN g % 100 < 96 THEN 'marked_verified' WHEN g % 100 < 98 THEN 'switched'
            WHEN g % 100 = 98 THEN 'held' ELSE 'backed_off' END,
       NULL, NULL, NULL, 1, '{{}}', NULL
FROM (SELECT g, now() - interval '365 days' + (g::float8 / {rows}) * interval '365 days' AS t
      FROM generate_series(1, {rows}) AS g) AS s
"""

SEED_DECISIONS = """
INSERT INTO decisions (at, actor, action, practice_id, ticket_id, note)
SELECT now() - interval '365 days' + (g::float8 / {decisions}) * interval '365 days', 'operator' || (g % 20),
       (ARRAY['approved', 'rejected', 'acknowledged', 'resolved'])[1 + g % 4], 1 + (g * 7 % {practices}), NULL,
       'rang the practice'
FROM generate_series(1, {decisions}) AS g
"""

SEED_TICKETS = """
INSERT INTO tickets (kind, reason, status, practice_id, dedup_key, occurrences, detail, opened_at, last_seen_at)
SELECT 'contact_practice', 'not_found', CASE WHEN g % 4 = 0 THEN 'open' ELSE 'resolved' END, g,
       'contact_practice/not_found/' || g, 1, 'No active site carries this PMS ID.', now(), now()
FROM generate_series(1, {tickets}) AS g
"""


def seed(server: Any, *, practices: int, rows: int, decisions: int, tickets: int) -> float:
    began = time.perf_counter()
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname={DATABASE}", autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no per-row foreign-key triggers while seeding
        conn.execute(SEED_PRACTICES.format(practices=practices))
        conn.execute(SEED_RECONCILIATIONS.format(practices=practices, rows=rows - decisions))
        conn.execute(SEED_DECISIONS.format(practices=practices, decisions=decisions))
        conn.execute(SEED_TICKETS.format(tickets=tickets))
        for table in ("practices", "reconciliations", "decisions", "tickets"):
            conn.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - began


def median_ms(run: Callable[[Any], Any], session: Any, repeat: int) -> float:
    run(session)  # warm the cache: the medians compare plans, not a cold disk
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run(session)
        times.append((time.perf_counter() - began) * 1000)
        session.rollback()
    return statistics.median(times)


def audit_key_at(session: Any, depth: int, **where: Any) -> str:
    """The cursor of the audit entry ``depth`` rows down the worker's rows (newest first)."""
    query = select(Reconciliation.started_at, Reconciliation.id).where(col(Reconciliation.actor).is_(None))
    for name, value in where.items():
        query = query.where(getattr(Reconciliation, name) == value)
    at, id_ = session.exec(query.order_by(col(Reconciliation.started_at).desc(), col(Reconciliation.id).desc())
                           .offset(depth).limit(1)).one()
    return AuditKey(at, 0, id_).encode()


def cases(session: Any, *, practices: int, rows: int, decisions: int, tickets: int) -> list[tuple[str, Callable, Any, Callable]]:
    """``(name, keyset page, its statement for EXPLAIN, the OFFSET page at the same depth)``."""
    deep_practice = practices // 2
    held_depth = practices // 50 // 2  # half-way down the held practices
    audit_depth = rows // 2
    worker_audit = select(Reconciliation).where(col(Reconciliation.actor).is_(None))
    newest = (col(Reconciliation.started_at).desc(), col(Reconciliation.id).desc())
    deep_audit = audit_key_at(session, audit_depth)
    switched_depth = rows // 50 // 2
    deep_switched = audit_key_at(session, switched_depth, action="switched")
    held_cursor = str(session.exec(select(Practice.id).where(Practice.state == "held").order_by(col(Practice.id))
                                   .offset(held_depth).limit(1)).one())
    one_practice = practices // 3
    week = (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 8, tzinfo=UTC))
    actor_depth = decisions // 20 // 2
    deep_actor = session.exec(select(OperatorDecision.at, OperatorDecision.id).where(OperatorDecision.actor == "operator7")
                              .order_by(col(OperatorDecision.at).desc(), col(OperatorDecision.id).desc())
                              .offset(actor_depth).limit(1)).one()
    actor_cursor = AuditKey(deep_actor[0], 1, deep_actor[1]).encode()
    ticket_depth = tickets // 4 // 2

    def offset_practices(depth: int, **where: Any) -> Callable:
        query = select(Practice)
        for name, value in where.items():
            query = query.where(getattr(Practice, name) == value)
        return lambda s: s.exec(query.order_by(col(Practice.id)).offset(depth).limit(PAGE)).all()

    def offset_audit(depth: int, query: Any = worker_audit, order: Any = newest) -> Callable:
        return lambda s: s.exec(query.order_by(*order).offset(depth).limit(PAGE)).all()

    def keyset_stmt(query: Any, order: Any) -> Any:
        return query.order_by(*order).limit(PAGE + 1)

    after_deep = col(Reconciliation.started_at) < datetime.now(UTC)  # the plan's shape, for EXPLAIN
    return [
        ("practices: first page", lambda s: listings.practices_page(s, limit=PAGE),
         select(Practice).order_by(col(Practice.id)).limit(PAGE + 1), offset_practices(0)),
        (f"practices: page at {deep_practice:,}", lambda s: listings.practices_page(s, cursor=str(deep_practice), limit=PAGE),
         select(Practice).where(col(Practice.id) > deep_practice).order_by(col(Practice.id)).limit(PAGE + 1),
         offset_practices(deep_practice)),
        (f"practices: held, page at {held_depth:,}", lambda s: listings.practices_page(s, state="held", cursor=held_cursor, limit=PAGE),
         select(Practice).where(Practice.state == "held", col(Practice.id) > int(held_cursor)).order_by(col(Practice.id)).limit(PAGE + 1),
         offset_practices(held_depth, state="held")),
        ("practices: search 'clinic' (every one) + counts",
         lambda s: (listings.practices_page(s, text="clinic", limit=PAGE), listings.count_practices_by_state(s, text="clinic", cap=listings.SEARCH_COUNT_CAP)),
         listings.practices_query(text="clinic", limit=PAGE), None),
        (f"practices: search 'clinic', page at {practices // 2:,}",
         lambda s: listings.practices_page(s, text="clinic", cursor=str(practices // 2), limit=PAGE),
         listings.practices_query(text="clinic", cursor=str(practices // 2), limit=PAGE), None),
        ("practices: counts by state", lambda s: listings.count_practices_by_state(s),
         select(Practice.state, text("count(*)")).group_by(col(Practice.state)), None),
        (f"console: held, page at {held_depth:,} + counts",
         lambda s: (listings.practices_page(s, state="held", cursor=held_cursor, limit=PAGE),
                    listings.count_practices_by_state(s)),
         select(Practice).where(Practice.state == "held", col(Practice.id) > int(held_cursor)).order_by(col(Practice.id)).limit(PAGE + 1),
         None),
        ("practices: search 'clinic 4213' + counts",
         lambda s: (listings.practices_page(s, text="clinic 4213", limit=PAGE), listings.count_practices_by_state(s, text="clinic 4213", cap=listings.SEARCH_COUNT_CAP)),
         select(Practice.id).where(*listings._practice_filter(state=None, text="clinic 4213")).limit(listings.SEARCH_COUNT_CAP + 1),
         None),
        ("audit: first page", lambda s: listings.audit_page(s, limit=PAGE), keyset_stmt(worker_audit, newest),
         offset_audit(0)),
        (f"audit: page at {audit_depth:,}", lambda s: listings.audit_page(s, cursor=deep_audit, limit=PAGE),
         keyset_stmt(worker_audit.where(after_deep), newest), offset_audit(audit_depth)),
        (f"audit: action switched, page at {switched_depth:,}",
         lambda s: listings.audit_page(s, action="switched", cursor=deep_switched, limit=PAGE),
         keyset_stmt(worker_audit.where(Reconciliation.action == "switched", after_deep), newest),
         offset_audit(switched_depth, worker_audit.where(Reconciliation.action == "switched"))),
        (f"audit: actor operator7, page at {actor_depth:,}",
         lambda s: listings.audit_page(s, actor="operator7", cursor=actor_cursor, limit=PAGE),
         select(OperatorDecision).where(OperatorDecision.actor == "operator7", col(OperatorDecision.at) < datetime.now(UTC))
         .order_by(col(OperatorDecision.at).desc(), col(OperatorDecision.id).desc()).limit(PAGE + 1),
         lambda s: s.exec(select(OperatorDecision).where(OperatorDecision.actor == "operator7")
                          .order_by(col(OperatorDecision.at).desc(), col(OperatorDecision.id).desc())
                          .offset(actor_depth).limit(PAGE)).all()),
        ("audit: one practice, first page", lambda s: listings.audit_page(s, practice_id=one_practice, limit=PAGE),
         keyset_stmt(worker_audit.where(Reconciliation.practice_id == one_practice), newest),
         offset_audit(0, worker_audit.where(Reconciliation.practice_id == one_practice))),
        ("audit: one week in June, first page", lambda s: listings.audit_page(s, since=week[0], until=week[1], limit=PAGE),
         keyset_stmt(worker_audit.where(col(Reconciliation.started_at) >= week[0], col(Reconciliation.started_at) < week[1]), newest),
         None),
        (f"tickets: open, page at {ticket_depth:,}",
         lambda s: listings.tickets_page(s, statuses=UNRESOLVED, cursor=str(ticket_depth * 4), limit=PAGE),
         select(Ticket).where(or_(Ticket.status == "open", Ticket.status == "acknowledged"), col(Ticket.id) > ticket_depth * 4)
         .order_by(col(Ticket.id)).limit(PAGE + 1),
         lambda s: s.exec(select(Ticket).where(col(Ticket.status).in_(["open", "acknowledged"])).order_by(col(Ticket.id))
                          .offset(ticket_depth).limit(PAGE)).all()),
    ]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    scale = 10 if "--quick" in argv else 1
    practices, rows = PRACTICES // scale, AUDIT_ROWS // scale
    configure_logging(get_settings(), stream=sys.stderr)
    server = start_postgres()
    saved = os.environ.get("DATABASE_URL")
    try:
        os.environ["DATABASE_URL"] = server.create_database(DATABASE)
        get_settings.cache_clear()
        db.reset_engine()
        db.upgrade_schema()
        seeded = seed(server, practices=practices, rows=rows, decisions=DECISIONS // scale, tickets=TICKETS // scale)
        results = []
        with db.new_session() as session:
            for name, keyset, statement, naive in cases(session, practices=practices, rows=rows, decisions=DECISIONS // scale, tickets=TICKETS // scale):
                plan = explain(session, statement)
                fast = median_ms(keyset, session, REPEAT)
                slow = median_ms(naive, session, 3) if naive is not None else float("nan")
                results.append((name, fast, slow, plan))
        print(f"lists: {practices:,} practices, {rows - DECISIONS // scale:,} reconciliations + {DECISIONS // scale:,} "
              f"decisions ({rows:,} audit rows), {TICKETS // scale:,} tickets; PostgreSQL on loopback, schema at head; "
              f"seeded in {seeded:.0f} s; {PAGE} rows a page, median of {REPEAT}")
        print(f"{'page':<44} {'keyset ms':>9} {'OFFSET ms':>9}  keyset plan")
        for name, fast, slow, plan in results:
            shown = f"{slow:.2f}" if slow == slow else "-"
            print(f"{name:<44} {fast:>9.2f} {shown:>9}  {plan}")
        worst = max(results, key=lambda r: r[1])
        deep = [r for r in results if r[2] == r[2]]
        worst_naive = max(deep, key=lambda r: r[2])
        record("lists", f"each page well under {TARGET_MS:.0f} ms at {practices:,} practices and {rows:,} audit rows",
               figure=f"slowest {worst[1]:.1f} ms ({worst[0]})",
               baseline=f"OFFSET at the same depth: slowest {worst_naive[2]:.1f} ms ({worst_naive[0]})",
               ratio=f"{worst[1]:.1f} ms (< {TARGET_MS:.0f} ms)", met=worst[1] < TARGET_MS)
    finally:
        db.reset_engine()
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
        get_settings.cache_clear()
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])

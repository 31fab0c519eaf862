"""A year of audit: N reconciliation rows in a real PostgreSQL 15, the hot queries on them, and a
retention pass.

Seeds N rows (default 10,000,000; ``--rows N`` for a quicker run) with ``generate_series`` over
N / 365 practices (a daily sweep of each), spread over the last 365 days in id order, with the mix a daily sweep writes: 96%
routine ``unchanged`` checks, 2% switches, 1% holds with a ticket, 1% Halo unavailable. Then, in
one run:

1. **baseline**: the schema before migration 0007 (the indexes it had), the table un-folded;
2. **0007**: the same table after ``db upgrade`` added 0007's index (the time the migration took is
   shown: it is what a deployment waits for);
3. **folded**: after a retention pass with the default policy (30 days), then a VACUUM ANALYZE, as
   autovacuum would run it.

For each phase, the median time in ms of each hot query (the store's own functions, through
SQLAlchemy, over random practices) and its EXPLAIN plan (node types and the index each uses). Then
the retention pass's throughput and its longest transaction (one batch).

``python3 dev.py bench audit [--rows N]``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from enum import Enum
from itertools import islice
from typing import Any

import psycopg
from sqlalchemy import text
from sqlmodel import col, select

from models import Practice, Reconciliation, VerificationDay
from models.verification_day import ROUTINE_VERIFICATION_SQL
from reconciler.adapters import store
from reconciler.core.retention import RetentionPolicy
from reconciler.usecases.retention import apply_retention
from bench.targets import record
from tests.utils.servers import start_postgres
from worker import db, wiring
from worker.config import get_settings
from worker.logging import configure_logging

DEFAULT_ROWS = 10_000_000
DAYS = 365  # one routine check per practice per day: 10M rows are a year of a 27,000-practice fleet
REPEAT = 30

SEED_PRACTICES = """
INSERT INTO practices (pms_type, pms_id, halo_guid, practice_name, identifiers, identifiers_normalised, state,
                       last_verified_at, next_attempt_at, backoff_attempts, created_at, updated_at, version)
SELECT 'BestPractice', 'BP' || g, md5(g::text)::uuid::text, 'Clinic ' || g, '{}', '{}',
       CASE WHEN g % 100 = 0 THEN 'backoff' ELSE 'active' END,
       now() - (g % 172800) * interval '1 second',  -- half verified within a day, half stale
       CASE WHEN g % 100 = 0 THEN now() - (g % 600) * interval '1 second' END,
       0, now() - interval '400 days', now(), 1
FROM generate_series(1, %(practices)s) AS g
"""

# Ids increase with started_at, as a table written day by day does.
SEED_RECONCILIATIONS = """
INSERT INTO reconciliations (practice_id, trigger, started_at, finished_at, duration_ms, verdict, action,
                             old_guid, new_guid, ticket_id, halo_calls, halo_answer, detail)
SELECT 1 + (g %% %(practices)s),
       CASE WHEN g %% 33 = 0 THEN 'forbidden' ELSE 'sweep' END,
       t, t + interval '40 milliseconds', 40,
       CASE WHEN g %% 100 < 96 THEN 'unchanged' WHEN g %% 100 < 98 THEN 'infrastructure_change'
            WHEN g %% 100 = 98 THEN 'business_change' ELSE 'halo_unavailable' END,
       CASE WHEN g %% 100 < 96 THEN 'marked_verified' WHEN g %% 100 < 98 THEN 'switched'
            WHEN g %% 100 = 98 THEN 'held' ELSE 'backed_off' END,
       NULL, NULL, CASE WHEN g %% 100 = 98 THEN g END, 1, '{}', NULL
FROM (SELECT g, now() - interval '365 days' + (g::float8 / %(rows)s) * interval '365 days' AS t
      FROM generate_series(%(start)s, %(stop)s) AS g) AS s
"""


def plan_nodes(plan: dict[str, Any]) -> str:
    """``Limit > Index Scan Backward (ix_...)``: each node of the plan, depth first."""
    out = []

    def walk(node: dict[str, Any]) -> None:
        label = node["Node Type"]
        if node.get("Scan Direction") == "Backward":
            label += " Backward"
        if node.get("Index Name"):
            label += f" ({node['Index Name']})"
        elif node.get("Relation Name") and "Scan" in node["Node Type"]:
            label += f" ({node['Relation Name']})"
        out.append(label)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return " > ".join(out)


def uses_index(plan: str) -> bool:
    return "Index" in plan and "Seq Scan" not in plan


class Queries:
    """The hot queries, run through the store's functions; each also EXPLAINed as PostgreSQL runs it."""

    def __init__(self, n_practices: int, now: datetime) -> None:
        self.n_practices = n_practices
        self.now = now
        self.rng = random.Random(7)

    def _practice(self) -> int:
        return self.rng.randint(1, self.n_practices)

    def cases(self, *, folded_table: bool) -> list[tuple[str, Any, Any]]:
        """``(name, run(session), statement for EXPLAIN)``."""



        now = self.now
        since = now - timedelta(hours=1)
        stale_cutoff = now - timedelta(hours=24)
        pid = self._practice()

        def guard(session):
            return session.exec(store.guard_switches_query(since=since)).one()

        def page(session):
            return store.SqlStore(session).practice_reconciliations(self._practice(), limit=20)

        def audit(session):
            practice_id = self._practice()
            rows = store.SqlStore(session).practice_reconciliations(practice_id)
            days = store.SqlStore(session).verification_days(practice_id) if folded_table else []
            return len(rows) + len(days)

        def sweep_plan(session):
            due = list(islice(store.SqlStore(session).due_retry_ids(now=now), 1000))
            stale = list(islice(store.SqlStore(session).stale_practice_ids(cutoff=stale_cutoff), 1000))
            return len(due) + len(stale)

        cutoff = RetentionPolicy().cutoff(now)

        def retention_key(session):
            # The first key lookup of a retention batch (what each of its transactions starts with).
            query = (select(Reconciliation.started_at, Reconciliation.id)
                     .where(text(ROUTINE_VERIFICATION_SQL), col(Reconciliation.started_at) < cutoff)
                     .order_by(col(Reconciliation.started_at), col(Reconciliation.id)).offset(4999).limit(1))
            return session.exec(query).first()

        explain = {
            "guard: recent automatic switches": store.guard_switches_query(since=since),
            "practice page: newest 20": store.practice_reconciliations_query(practice_id=pid, limit=20),
            "audit --practice: all of one": store.practice_reconciliations_query(practice_id=pid),
            "sweep plan: stale page": (select(Practice.last_verified_at, Practice.id)
                                       .where(col(Practice.last_verified_at) < stale_cutoff)
                                       .order_by(col(Practice.last_verified_at), col(Practice.id)).limit(1000)),
            "retention: a batch's key": (select(Reconciliation.started_at, Reconciliation.id)
                                         .where(text(ROUTINE_VERIFICATION_SQL), col(Reconciliation.started_at) < cutoff)
                                         .order_by(col(Reconciliation.started_at), col(Reconciliation.id))
                                         .offset(4999).limit(1)),
        }
        if folded_table:
            explain["audit --practice: its days"] = (select(VerificationDay).where(VerificationDay.practice_id == pid)
                                                     .order_by(col(VerificationDay.day).desc()))
        runs = {
            "guard: recent automatic switches": guard,
            "practice page: newest 20": page,
            "audit --practice: all of one": audit,
            "sweep plan: stale page": sweep_plan,
            "retention: a batch's key": retention_key,
        }
        return [(name, runs.get(name), statement) for name, statement in explain.items()]


def explain(session, statement) -> str:
    # The statement as the driver receives it (the dialect's casts and placeholders), EXPLAINed.
    compiled = statement.compile(dialect=session.get_bind().dialect)
    params = {k: (str(v.value) if isinstance(v, Enum) else v) for k, v in compiled.params.items()}
    [[document]] = session.connection().exec_driver_sql("EXPLAIN (FORMAT JSON) " + compiled.string, params).all()
    document = json.loads(document) if isinstance(document, str) else document
    return plan_nodes(document[0]["Plan"])


def measure(queries: Queries, *, folded_table: bool, slow_repeat: int = 3) -> dict[str, tuple[float, str]]:
    results = {}
    with db.new_session() as session:
        for name, run, statement in queries.cases(folded_table=folded_table):
            plan = explain(session, statement)
            if run is None:
                results[name] = (float("nan"), plan)
                continue
            repeat = REPEAT if uses_index(plan) else slow_repeat  # a full scan of 10M rows takes seconds
            run(session)  # warm the cache: the medians compare plans, not a cold disk
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                run(session)
                times.append((time.perf_counter() - began) * 1000)
            results[name] = (statistics.median(times), plan)
            session.rollback()
    return results


def seed(server, rows: int) -> tuple[int, float]:
    practices = max(100, rows // DAYS)
    began = time.perf_counter()
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=audit_year", autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no per-row foreign-key triggers while seeding
        conn.execute(SEED_PRACTICES.replace("%(practices)s", str(practices)))
        # The pre-0007 indexes are built once after the load, not maintained row by row.
        conn.execute("DROP INDEX ix_reconciliations_practice_started, ix_reconciliations_action_started")
        step = 1_000_000
        for start in range(1, rows + 1, step):
            conn.execute(SEED_RECONCILIATIONS % {"practices": practices, "rows": rows, "start": start,
                                                 "stop": min(rows, start + step - 1)})
        conn.execute("CREATE INDEX ix_reconciliations_practice_started ON reconciliations (practice_id, started_at)")
        conn.execute("CREATE INDEX ix_reconciliations_action_started ON reconciliations (action, started_at)")
        conn.execute("VACUUM ANALYZE practices")
        conn.execute("VACUUM ANALYZE reconciliations")
    return practices, time.perf_counter() - began


def vacuum(server) -> float:
    began = time.perf_counter()
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=audit_year", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE reconciliations")
        conn.execute("VACUUM ANALYZE verification_days")
    return time.perf_counter() - began


def count(table: str) -> int:
    with db.new_session() as session:
        return session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def table_size_mb(table: str) -> float:
    with db.new_session() as session:
        return session.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar_one() / 2**20


def parse_rows(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        if arg.startswith("--rows="):
            return int(arg.split("=", 1)[1])
        if arg == "--rows" and i + 1 < len(argv):
            return int(argv[i + 1])
    return DEFAULT_ROWS


# The baseline is the schema just before retention's migration (0007): whatever migrations come
# before it, the store's queries read every column they added.
BEFORE_RETENTION = db._revision_ids(db.MIGRATIONS / "versions" / "0007_retention.py")[1][0]  # type: ignore[index]

# "A few milliseconds" for a hot query, and the longest a retention batch may hold its row locks.
FEW_MS = 10.0
LONG_LOCK_SECONDS = 1.0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    rows = parse_rows(argv)

    # The pass's log lines go to stderr, not into the table this prints (and --write records).
    configure_logging(get_settings(), stream=sys.stderr)
    server = start_postgres()
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL",)}
    try:
        os.environ["DATABASE_URL"] = server.create_database("audit_year")
        get_settings.cache_clear()
        db.reset_engine()
        db.upgrade_schema(BEFORE_RETENTION)
        practices, seeded = seed(server, rows)
        now = datetime.now(UTC)
        queries = Queries(practices, now)
        size_before = table_size_mb("reconciliations")
        baseline = measure(queries, folded_table=False)

        began = time.perf_counter()
        db.upgrade_schema()
        migrated = time.perf_counter() - began
        indexed = measure(queries, folded_table=True)

        policy = RetentionPolicy()
        began = time.perf_counter()
        summary = apply_retention(wiring.unit_of_work, policy=policy, now=now, monotonic=time.monotonic)
        retention_wall = time.perf_counter() - began
        vacuumed = vacuum(server)
        folded = measure(queries, folded_table=True)
        left, day_rows = count("reconciliations"), count("verification_days")
        size_after = table_size_mb("reconciliations")

        print(f"audit_year: {rows:,} reconciliation rows over {practices:,} practices and 365 days "
              f"(96% routine unchanged, 2% switched, 1% held, 1% halo_unavailable); PostgreSQL 15 on loopback; "
              f"seeded in {seeded:.0f} s")
        print(f"{'query':<34} {'baseline ms':>11} {'0007 ms':>9} {'folded ms':>10}  plan (0007, then folded)")
        for name in folded:
            b, i, f = (f"{m:.2f}" if m == m else "-"  # NaN: not run on its own (part of the row above)
                       for m in (baseline.get(name, (float("nan"), ""))[0], indexed[name][0], folded[name][0]))
            print(f"{name:<34} {b:>11} {i:>9} {f:>10}  {indexed[name][1]}")
            if folded[name][1] != indexed[name][1]:
                print(f"{'':<34} {'':>11} {'':>9} {'':>10}  folded: {folded[name][1]}")
        print(f"baseline plans (schema {BEFORE_RETENTION}, before 0007's index):")
        for name, (_, plan) in baseline.items():
            print(f"  {name:<32} {plan}")
        print(f"migration 0007 on {rows:,} rows: {migrated:.1f} s (builds the partial index; run in a quiet hour)")
        rate = summary.folded / retention_wall if retention_wall else float("nan")
        print(f"retention pass ({policy.unchanged_days} days, {policy.batch_size:,} rows a transaction): folded "
              f"{summary.folded:,} rows into {day_rows:,} practice-days in {summary.batches:,} batches, "
              f"{retention_wall:.1f} s ({rate:,.0f} rows/s); longest transaction {summary.longest_batch_ms:.0f} ms; "
              f"VACUUM ANALYZE after it {vacuumed:.1f} s")
        print(f"reconciliations: {rows:,} rows ({size_before:,.0f} MB with indexes) -> {left:,} rows ({size_after:,.0f} MB "
              f"until VACUUM FULL or new rows reuse the space); verification_days: {day_rows:,} rows "
              f"({table_size_mb('verification_days'):,.0f} MB)")
        missing = [name for name, (_, plan) in itertools.chain(indexed.items(), folded.items()) if not uses_index(plan)]
        slowest = max(folded, key=lambda name: folded[name][0] if folded[name][0] == folded[name][0] else 0.0)
        worst = folded[slowest][0]
        record("audit", f"hot queries within a few ms at {rows:,} rows, plans on an index",
               figure=f"slowest {worst:.1f} ms ({slowest}); index: {'all' if not missing else 'NOT ' + ', '.join(sorted(set(missing)))}",
               baseline=f"un-folded, schema {BEFORE_RETENTION}: slowest {max(m for m, _ in baseline.values() if m == m):.1f} ms",
               ratio=f"{worst:.1f} ms (<= {FEW_MS:.0f} ms)", met=worst <= FEW_MS and not missing)
        record("audit", "retention in short batches", figure=f"longest transaction {summary.longest_batch_ms:.0f} ms",
               baseline=f"{summary.folded:,} rows folded at {rate:,.0f} rows/s",
               ratio=f"{summary.longest_batch_ms / 1000:.2f} s (<= {LONG_LOCK_SECONDS:.0f} s)",
               met=summary.longest_batch_ms <= LONG_LOCK_SECONDS * 1000)
        print("every hot query uses an index after 0007" if not missing else
              f"NOT using an index after 0007: {sorted(set(missing))}")
    finally:
        db.reset_engine()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])

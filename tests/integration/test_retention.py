"""Retention on a real PostgreSQL and on SQLite: what is kept, what folds, the counts add up, a
second pass changes nothing, two passes at once count each row once, and the command line."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import col, select

from models import Action, Reconciliation, Trigger, VerificationDay, Verdict
from reconciler.adapters.store import SqlStore
from reconciler.core.retention import RetentionPolicy
from reconciler.usecases.retention import apply_retention
from worker import db, wiring
from worker.cli import main
from worker.config import get_settings

pytestmark = pytest.mark.integration  # a real PostgreSQL on loopback

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=45)  # older than the default 30 days
RECENT = NOW - timedelta(days=3)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'retention.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    db.reset_engine()
    db.upgrade_schema()
    yield request.param
    db.reset_engine()


def practice(n: int) -> int:
    with db.new_session() as session:
        made = SqlStore(session).add_practice(pms_type="BestPractice", pms_id=f"BP{n}",
                                  halo_guid=f"00000000-0000-4000-8000-{n:012d}", identifiers={"practice_name": f"P{n}"},
                                  now=NOW - timedelta(days=400))
        session.commit()
        return made.id


def audit(practice_id: int, at: datetime, *, verdict=Verdict.UNCHANGED, action=Action.MARKED_VERIFIED,
          trigger=Trigger.SWEEP, ticket_id: int | None = None, count: int = 1) -> None:
    with db.new_session() as session:
        for _ in range(count):
            session.add(Reconciliation(practice_id=practice_id, trigger=trigger, started_at=at, finished_at=at,
                                       verdict=verdict, action=action, ticket_id=ticket_id))
        session.commit()


def rows() -> list[tuple]:
    with db.new_session() as session:
        found = session.exec(select(Reconciliation).order_by(col(Reconciliation.id))).all()
        return [(r.practice_id, r.started_at, str(r.verdict), str(r.action), str(r.trigger), r.ticket_id) for r in found]


def days() -> dict[tuple[int, date], int]:
    with db.new_session() as session:
        return {(d.practice_id, d.day): d.count for d in session.exec(select(VerificationDay)).all()}


def run(policy: RetentionPolicy = RetentionPolicy(), *, now: datetime = NOW, dry_run: bool = False):
    return apply_retention(wiring.unit_of_work, policy=policy, now=now, monotonic=time.monotonic, dry_run=dry_run)


def test_routine_verifications_fold_into_daily_counts_and_everything_else_is_kept(database):
    a, b = practice(1), practice(2)
    # Routine checks, old: every automatic trigger folds.
    audit(a, OLD, count=3)
    audit(a, OLD + timedelta(hours=5), trigger=Trigger.FORBIDDEN)
    audit(a, OLD + timedelta(days=1), trigger=Trigger.RETRY, count=2)
    audit(b, OLD + timedelta(hours=11, minutes=59), count=2)  # 23:59 UTC, the same day
    # Old, and kept for good.
    kept_old = [
        dict(verdict=Verdict.INFRASTRUCTURE_CHANGE, action=Action.SWITCHED),
        dict(verdict=Verdict.BUSINESS_CHANGE, action=Action.HELD, ticket_id=7),
        dict(verdict=Verdict.NOT_FOUND, action=Action.TICKETED, ticket_id=8),
        dict(verdict=Verdict.HALO_UNAVAILABLE, action=Action.BACKED_OFF),
        dict(verdict=Verdict.UNCHANGED, action=Action.MARKED_VERIFIED, trigger=Trigger.MANUAL),  # a person's run
        dict(verdict=Verdict.UNCHANGED, action=Action.TICKETED, ticket_id=9),  # forbidden_persists
        dict(verdict=Verdict.UNCHANGED, action=Action.MARKED_VERIFIED, ticket_id=10),
        dict(verdict=Verdict.BUSINESS_CHANGE, action=Action.SWITCHED, trigger=Trigger.MANUAL),  # an approval
    ]
    for fields in kept_old:
        audit(a, OLD, **fields)
    audit(a, RECENT, count=2)  # routine, but younger than the age
    before = rows()

    summary = run()

    assert summary.folded == 8 and summary.cutoff == NOW - timedelta(days=30)
    after = rows()
    assert len(after) == len(before) - 8 == len(kept_old) + 2
    assert all(r in before for r in after)
    assert Counter(r[1] for r in after) == {OLD: len(kept_old), RECENT: 2}
    assert days() == {(a, OLD.date()): 4, (a, (OLD + timedelta(days=1)).date()): 2, (b, OLD.date()): 2}
    assert sum(days().values()) + len(after) == len(before)

    # A second pass finds nothing; the counts stay.
    again = run()
    assert (again.folded, again.batches) == (0, 0)
    assert rows() == after and days() == {(a, OLD.date()): 4, (a, (OLD + timedelta(days=1)).date()): 2, (b, OLD.date()): 2}


def test_small_batches_across_ties_fold_every_row_once_and_later_passes_add_to_the_same_day(database):
    a = practice(1)
    moment = OLD.replace(hour=10)
    audit(a, moment, count=7)  # seven rows with one started_at: the keyset's id breaks the tie
    audit(a, moment + timedelta(minutes=1), count=4)

    summary = run(RetentionPolicy(batch_size=3))

    assert (summary.folded, summary.batches) == (11, 4)
    assert rows() == [] and days() == {(a, moment.date()): 11}

    # The same day's later checks fold a day later, into the same count.
    audit(a, moment + timedelta(hours=2), count=5)
    assert run(RetentionPolicy(batch_size=3)).folded == 5
    assert days() == {(a, moment.date()): 16}


def test_a_dry_run_counts_and_changes_nothing(database):
    a = practice(1)
    audit(a, OLD, count=4)
    audit(a, RECENT)
    before = rows()

    summary = run(dry_run=True)

    assert (summary.folded, summary.dry_run) == (4, True)
    assert rows() == before and days() == {}


def test_the_age_is_the_settings(database, monkeypatch):
    a = practice(1)
    audit(a, NOW - timedelta(days=10), count=2)
    audit(a, NOW - timedelta(days=5))
    monkeypatch.setenv("HALO_RECONCILER_RETENTION_DAYS", "7")
    get_settings.cache_clear()

    assert run(wiring.retention_policy()).folded == 2
    assert days() == {(a, (NOW - timedelta(days=10)).date()): 2}


def test_two_passes_at_once_count_each_row_once(database):
    if database == "sqlite":
        pytest.skip("SQLite has one writer at a time; the race is PostgreSQL's")
    ids = [practice(n) for n in range(1, 6)]
    for i, pid in enumerate(ids):
        for day in range(4):
            audit(pid, OLD - timedelta(days=day, minutes=i), count=25)
    total = 5 * 4 * 25
    results: list[int] = []
    errors: list[BaseException] = []

    def pass_() -> None:
        try:
            results.append(run(RetentionPolicy(batch_size=7)).folded)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=pass_) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(results) == total and rows() == []
    assert sum(days().values()) == total and len(days()) == 5 * 4


def test_retention_run_on_the_command_line(database, capsys):
    a = practice(1)
    audit(a, datetime.now(UTC) - timedelta(days=60), count=3)
    audit(a, datetime.now(UTC) - timedelta(days=60), verdict=Verdict.INFRASTRUCTURE_CHANGE, action=Action.SWITCHED)

    assert main(["retention", "run", "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert (planned["folded"], planned["dry_run"]) == (3, True)
    assert len(rows()) == 4

    assert main(["retention", "run", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["folded"], done["batches"], done["day_rows"]) == (3, 1, 1)
    assert len(rows()) == 1

    assert main(["retention", "run"]) == 0
    assert "folded 0 routine verification(s)" in capsys.readouterr().out


@pytest.mark.parametrize("name,value", [
    ("HALO_RECONCILER_RETENTION_DAYS", "0"),
    ("HALO_RECONCILER_RETENTION_DAYS", "-5"),
    ("HALO_RECONCILER_RETENTION_DAYS", "thirty"),
    ("HALO_RECONCILER_RETENTION_BATCH_SIZE", "0"),
    ("HALO_RECONCILER_RETENTION_BATCH_SIZE", "1000000"),
], ids=["zero-days", "negative-days", "words", "empty-batch", "huge-batch"])
def test_bad_retention_settings_are_refused_and_nothing_changes(database, monkeypatch, capsys, name, value):
    a = practice(1)
    audit(a, OLD, count=2)
    before = rows()
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    assert main(["retention", "run"]) == 2
    assert name in capsys.readouterr().err
    monkeypatch.delenv(name)
    get_settings.cache_clear()
    assert rows() == before and days() == {}


def test_the_beat_task_folds_one_bounded_pass(database, monkeypatch):
    from tasks.retention import apply_retention_task  # the Celery app loads only for this test

    a = practice(1)
    audit(a, datetime.now(UTC) - timedelta(days=40), count=250)
    monkeypatch.setenv("HALO_RECONCILER_RETENTION_BATCH_SIZE", "100")
    monkeypatch.setenv("HALO_RECONCILER_RETENTION_MAX_BATCHES", "2")
    get_settings.cache_clear()

    assert apply_retention_task.run() == 200  # two batches of 100; the rest waits for the next pass
    assert len(rows()) == 50 and sum(days().values()) == 200
    assert apply_retention_task.run() == 50
    assert rows() == [] and sum(days().values()) == 250

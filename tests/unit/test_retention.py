"""Retention's pure parts and its wiring: the policy, the daily counts, the settings, the beat."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from reconciler.core.retention import DEFAULT_UNCHANGED_DAYS, RetentionPolicy, day_counts, routine_sql
from worker import wiring
from worker.config import ConfigError, load_settings


def test_the_cutoff_is_the_age_before_now():
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert RetentionPolicy().cutoff(now) == now - timedelta(days=DEFAULT_UNCHANGED_DAYS)
    assert RetentionPolicy(unchanged_days=1).cutoff(now) == datetime(2026, 11, 30, 12, tzinfo=UTC)


@pytest.mark.parametrize("fields", [{"unchanged_days": 0}, {"unchanged_days": -1}, {"batch_size": 0}],
                         ids=["no-days", "negative-days", "empty-batch"])
def test_a_policy_that_would_fold_everything_or_nothing_is_refused(fields):
    with pytest.raises(ValueError):
        RetentionPolicy(**fields)


def test_daily_counts_are_per_practice_and_utc_day_sorted_by_key():
    sydney = timezone(timedelta(hours=11))
    rows = [
        (2, datetime(2026, 10, 1, 23, 30, tzinfo=UTC)),
        (1, datetime(2026, 10, 2, 9, 0, tzinfo=sydney)),  # 22:00 UTC on 1 October
        (1, datetime(2026, 10, 1, 0, 0, tzinfo=UTC)),
        (2, datetime(2026, 10, 2, 0, 0, tzinfo=UTC)),
        (2, datetime(2026, 10, 1, 1, 0, tzinfo=UTC)),
    ]
    assert day_counts(rows) == [(1, date(2026, 10, 1), 2), (2, date(2026, 10, 1), 2), (2, date(2026, 10, 2), 1)]
    assert sum(n for *_, n in day_counts(rows)) == len(rows)
    assert day_counts([]) == []


def test_the_routine_rule_in_sql_names_each_kept_case():
    sql = routine_sql()
    for part in ("verdict = 'unchanged'", "action = 'marked_verified'", "trigger != 'manual'", "ticket_id IS NULL"):
        assert part in sql


def test_the_migration_indexes_exactly_the_rule_the_store_queries():
    import importlib.util  # a migration is loaded from its file, as Alembic does
    from pathlib import Path

    import models.migrations

    [path] = (Path(models.migrations.__file__).parent / "versions").glob("0007_*.py")
    spec = importlib.util.spec_from_file_location("migration_0007", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.ROUTINE == routine_sql()


def test_settings_defaults_and_the_policy_built_from_them(monkeypatch):
    settings = load_settings()
    assert (settings.retention_days, settings.retention_batch_size, settings.retention_interval_seconds,
            settings.retention_max_batches) == (30, 5000, 3600.0, 200)
    monkeypatch.setenv("HALO_RECONCILER_RETENTION_DAYS", "90")
    monkeypatch.setenv("HALO_RECONCILER_RETENTION_BATCH_SIZE", "1000")
    assert wiring.retention_policy(load_settings()) == RetentionPolicy(unchanged_days=90, batch_size=1000)


@pytest.mark.parametrize("name,value", [
    ("HALO_RECONCILER_RETENTION_DAYS", "0"),
    ("HALO_RECONCILER_RETENTION_DAYS", "1.5"),
    ("HALO_RECONCILER_RETENTION_BATCH_SIZE", "10"),
    ("HALO_RECONCILER_RETENTION_INTERVAL_SECONDS", "1"),
    ("HALO_RECONCILER_RETENTION_MAX_BATCHES", "0"),
])
def test_bad_retention_settings_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_beat_schedules_the_retention_task_on_the_sweep_queue():
    from tasks import retention  # registers the task, as the worker's include does
    from worker.celery_app import app

    entry = app.conf.beat_schedule["retention"]
    assert entry == {"task": "halo.apply_retention", "schedule": 3600.0}
    assert retention.apply_retention_task.name in app.tasks
    assert app.conf.task_routes["halo.apply_retention"] == {"queue": "sweep"}
    assert "tasks.retention" in app.conf.include

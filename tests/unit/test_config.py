"""Configuration: read once, validated, errors name the variable, the key never prints."""

from __future__ import annotations

import pytest

from worker.config import ConfigError, get_settings, load_settings


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("HALO_RECONCILER_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.halo_base_url == "https://api.haloconnect.io"
    assert settings.data_dir == tmp_path / "halo-reconciler"
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'halo-reconciler' / 'halo-reconciler.sqlite3'}"
    assert settings.is_embedded and settings.subscription_key is None
    assert (settings.forbidden_threshold, settings.forbidden_window_seconds, settings.mass_change_min) == (3, 3600, 50)


@pytest.mark.parametrize("name,value,named", [
    ("HALO_BASE_URL", "ftp://x", "HALO_BASE_URL"),
    ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
    ("BROKER_URL", "amqp://x", "BROKER_URL"),
    ("HALO_RECONCILER_FORBIDDEN_THRESHOLD", "0", "HALO_RECONCILER_FORBIDDEN_THRESHOLD"),
    ("HALO_RECONCILER_INFRASTRUCTURE_POLICY", "yolo", "HALO_RECONCILER_INFRASTRUCTURE_POLICY"),
    ("HALO_RECONCILER_LOG_LEVEL", "LOUD", "HALO_RECONCILER_LOG_LEVEL"),
])
def test_errors_name_the_variable(monkeypatch, name, value, named):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_the_key_is_a_secret_and_never_echoed(monkeypatch):
    monkeypatch.setenv("HALO_SUBSCRIPTION_KEY", "abc def-secret")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "def-secret" not in str(raised.value)
    monkeypatch.setenv("HALO_SUBSCRIPTION_KEY", "good-secret-123")
    settings = load_settings()
    assert "good-secret-123" not in repr(settings) and "good-secret-123" not in str(settings.model_dump())
    assert settings.subscription_key == "good-secret-123"


def test_postgres_urls_get_the_psycopg_driver(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@h/db")
    assert load_settings().effective_database_url == "postgresql+psycopg://u:p@h/db"


def test_loaded_once(monkeypatch):
    first = get_settings()
    monkeypatch.setenv("HALO_BASE_URL", "https://api.stage.haloconnect.io")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().halo_base_url == "https://api.stage.haloconnect.io"


def test_a_webhook_needs_a_secret(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_URL", "https://hooks.example/tickets")
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        load_settings()


def test_the_visibility_timeout_must_outlast_a_run(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_TASK_TIME_LIMIT_SECONDS", "60")
    monkeypatch.setenv("HALO_RECONCILER_HALO_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("HALO_RECONCILER_HALO_RETRY_AFTER_CAP_SECONDS", "1")
    monkeypatch.setenv("HALO_RECONCILER_BROKER_VISIBILITY_TIMEOUT_SECONDS", "90")
    with pytest.raises(ConfigError, match="BROKER_VISIBILITY_TIMEOUT_SECONDS"):
        load_settings()
    monkeypatch.setenv("HALO_RECONCILER_BROKER_VISIBILITY_TIMEOUT_SECONDS", "91")
    assert load_settings().run_lock_seconds == 90


def test_the_soft_time_limit_must_exceed_a_runs_worst_case(monkeypatch):
    # Defaults: 4 calls x (4 attempts x 15 s + 3 x 60 s of Retry-After) = 960 s < 1440 s (80 % of 1800).
    assert load_settings().worst_case_run_seconds == 960 < load_settings().soft_time_limit_seconds
    # Today's old default of 300 s (soft 240 s) equals one call's worst case: refused, naming the variable.
    monkeypatch.setenv("HALO_RECONCILER_TASK_TIME_LIMIT_SECONDS", "300")
    with pytest.raises(ConfigError, match="TASK_TIME_LIMIT_SECONDS.*960 s"):
        load_settings()
    # The identifier query is one more call in a row: 1200 s, still under the default soft limit.
    monkeypatch.delenv("HALO_RECONCILER_TASK_TIME_LIMIT_SECONDS")
    monkeypatch.setenv("HALO_RECONCILER_IDENTIFIER_QUERY", "SELECT 1")
    assert load_settings().worst_case_run_seconds == 1200
    monkeypatch.setenv("HALO_RECONCILER_HALO_TIMEOUT_SECONDS", "30")  # 5 x (120 + 180) = 1500 > 1440
    with pytest.raises(ConfigError, match="1500 s"):
        load_settings()


def test_recheck_and_breaker_bounds_are_ordered(monkeypatch):
    settings = load_settings()
    assert (settings.recheck_min_seconds, settings.recheck_max_seconds) == (10, 900)
    assert (settings.breaker_probe_seconds, settings.breaker_probe_max_seconds) == (60, 3600)
    assert settings.unavailable_ticket_after_seconds == 86400
    monkeypatch.setenv("HALO_RECONCILER_RECHECK_MIN_SECONDS", "1000")
    with pytest.raises(ConfigError, match="RECHECK_MAX_SECONDS"):
        load_settings()
    monkeypatch.delenv("HALO_RECONCILER_RECHECK_MIN_SECONDS")
    monkeypatch.setenv("HALO_RECONCILER_BREAKER_PROBE_SECONDS", "7200")
    with pytest.raises(ConfigError, match="BREAKER_PROBE_MAX_SECONDS"):
        load_settings()

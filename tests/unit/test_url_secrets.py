"""The database and broker passwords: hidden in ``repr(Settings)`` and redacted from log lines, like the key."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from worker import logging as worker_logging
from worker.config import load_settings, mask_url_password, url_password

DB_PASSWORD = "db-Pa55word"
BROKER_PASSWORD = "br0ker%2Fsecret"  # percent-encoded in the URL: "br0ker/secret" once decoded


@pytest.fixture
def secret_urls(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://halo:{DB_PASSWORD}@db.internal:5432/halo")
    monkeypatch.setenv("BROKER_URL", f"redis://:{BROKER_PASSWORD}@redis.internal:6379/0")
    monkeypatch.setattr(worker_logging, "_secrets", ())
    return load_settings()


def test_repr_and_str_hide_both_passwords(secret_urls):
    for text in (repr(secret_urls), str(secret_urls)):
        assert DB_PASSWORD not in text and BROKER_PASSWORD not in text and "br0ker/secret" not in text
        # what is left still says where the settings point
        assert "db.internal" in text and "redis.internal" in text and "***" in text
    # the URLs themselves are untouched: SQLAlchemy and kombu need the password
    assert DB_PASSWORD in secret_urls.effective_database_url and BROKER_PASSWORD in secret_urls.broker_url


def test_log_lines_redact_the_passwords(secret_urls):
    out = io.StringIO()
    worker_logging.configure_logging(secret_urls.model_copy(update={"log_format": "json"}), stream=out)
    log = structlog.get_logger()
    log.warning("database_unreachable", url=secret_urls.effective_database_url,
                error=f"password authentication failed for 'br0ker/secret' and {DB_PASSWORD}")
    log.warning("broker_unreachable", nested={"url": secret_urls.broker_url})
    text = out.getvalue()
    assert DB_PASSWORD not in text and BROKER_PASSWORD not in text and "br0ker/secret" not in text
    events = [json.loads(line)["event"] for line in text.splitlines()]
    assert events == ["database_unreachable", "broker_unreachable"]
    assert "db.internal" in text and "redis.internal" in text


def test_a_url_password_too_short_to_register_is_still_cut_from_urls(monkeypatch):
    monkeypatch.setattr(worker_logging, "_secrets", ())
    event = worker_logging.redact_secrets(None, "info", {"event": "x", "url": "redis://:pw@host:6379/0 and more"})
    assert event["url"] == f"redis://:{worker_logging.REDACTED}@host:6379/0 and more"


@pytest.mark.parametrize("url,password,masked", [
    ("postgresql+psycopg://u:p%40ss@h/db", "p%40ss", "postgresql+psycopg://u:***@h/db"),
    ("redis://:secret@h:6379/0", "secret", "redis://:***@h:6379/0"),
    ("redis://h:6379/0", None, "redis://h:6379/0"),
    ("redis://user@h:6379/0", None, "redis://user@h:6379/0"),
    ("sqlite:///tmp/x.sqlite3", None, "sqlite:///tmp/x.sqlite3"),
], ids=["postgres", "redis-no-user", "no-credentials", "user-only", "sqlite"])
def test_url_password_and_mask(url, password, masked):
    assert url_password(url) == password
    assert mask_url_password(url) == masked


WEBHOOK_PASSWORD = "hook-Pa55word"
WEBHOOK_SIGNATURE = "sv2024sig0f8a7c3b9e"


def test_repr_hides_a_password_or_signature_inside_the_webhook_url(monkeypatch):
    # issue 24 (Low): repr(Settings) masked every secret except these.
    monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_URL",
                       f"https://ops:{WEBHOOK_PASSWORD}@hooks.example.com/in?sig={WEBHOOK_SIGNATURE}&v=2")
    monkeypatch.setenv("HALO_RECONCILER_WEBHOOK_SECRET", "webhook-signing-secret-1234")
    monkeypatch.setattr(worker_logging, "_secrets", ())
    settings = load_settings()
    for text in (repr(settings), str(settings)):
        assert WEBHOOK_PASSWORD not in text and WEBHOOK_SIGNATURE not in text
        assert "hooks.example.com/in?sig=***&v=***" in text
    assert settings.webhook_url.endswith(WEBHOOK_SIGNATURE + "&v=2")  # the URL itself is untouched
    # and the log redactor knows both (a delivery error quoting the URL)
    assert WEBHOOK_PASSWORD in settings.url_secrets and WEBHOOK_SIGNATURE in settings.url_secrets
    assert "2" not in settings.url_secrets

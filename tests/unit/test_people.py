"""Who decided, checked once: actor and note parsing, the sign-in throttle, the console's settings
and its redirect target (no servers: pure functions and an injected clock)."""

from __future__ import annotations

import pytest

from reconciler.core.errors import BadInput
from reconciler.core.people import parse_actor, parse_note, parse_operator_name, parse_role
from reconciler.core.vocabulary import OperatorRole
from worker.config import ConfigError, load_settings
from worker.serve.console.auth import Throttle
from worker.serve.console.routes import _safe_next


@pytest.mark.parametrize("raw, name", [("alice", "alice"), ("  Alice   Ng ", "Alice Ng"), ("ops@example.com", "ops@example.com")])
def test_actor_is_trimmed_and_kept(raw, name):
    assert parse_actor(raw) == name


@pytest.mark.parametrize("raw", ["", "   ", None, "worker", "WORKER", "a" * 129, "bell\x07"])
def test_bad_actor_is_bad_input(raw):
    with pytest.raises(BadInput):
        parse_actor(raw)


def test_note_is_optional_trimmed_and_bounded():
    assert parse_note(None) is None and parse_note("   ") is None
    assert parse_note("  rang them\nconfirmed  ") == "rang them\nconfirmed"
    with pytest.raises(BadInput):
        parse_note("x" * 1001)
    with pytest.raises(BadInput):
        parse_note("escape \x1b[31m")


def test_operator_names_have_no_spaces_and_roles_are_three():
    assert parse_operator_name("alice") == "alice"
    with pytest.raises(BadInput):
        parse_operator_name("alice ng")
    assert parse_role(" Approver ") is OperatorRole.APPROVER
    assert parse_role("admin") is OperatorRole.ADMIN
    with pytest.raises(BadInput):
        parse_role("root")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_counts_failures_per_key_within_the_window():
    clock = Clock()
    throttle = Throttle(attempts=3, window_seconds=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("name:alice", "addr:1") == 0
        throttle.failed("name:alice", "addr:1")
    assert throttle.retry_after("name:alice") == pytest.approx(60)
    assert throttle.retry_after("name:bob", "addr:1") > 0  # the address is throttled for every name
    assert throttle.retry_after("name:bob", "addr:2") == 0
    clock.now += 61
    assert throttle.retry_after("name:alice", "addr:1") == 0


def test_a_success_clears_the_name_but_not_the_address():
    throttle = Throttle(attempts=2, window_seconds=60, clock=Clock())
    throttle.failed("name:alice", "addr:1")
    throttle.failed("name:alice", "addr:1")
    throttle.succeeded("name:alice")
    assert throttle.retry_after("name:alice") == 0
    assert throttle.retry_after("addr:1") > 0


@pytest.mark.parametrize("value, target", [
    ("/practices/3", "/practices/3"), (None, "/"), ("", "/"), ("//evil.example/x", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("/signin", "/"),
])
def test_after_sign_in_only_a_path_on_this_server(value, target):
    assert _safe_next(value) == target


def test_console_settings_are_validated_once(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_PROXY_HEADER", "X-Forwarded-User")
    with pytest.raises(ConfigError, match="CONSOLE_TRUSTED_PROXIES"):
        load_settings()
    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    settings = load_settings()
    assert settings.console_proxy_header == "x-forwarded-user"
    assert settings.console_trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES", "not-an-address")
    with pytest.raises(ConfigError, match="CONSOLE_TRUSTED_PROXIES"):
        load_settings()
    monkeypatch.delenv("HALO_RECONCILER_CONSOLE_PROXY_HEADER")
    monkeypatch.delenv("HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES")
    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_SECRET", "too-short")
    with pytest.raises(ConfigError, match="CONSOLE_SECRET") as raised:
        load_settings()
    assert "too-short" not in str(raised.value)

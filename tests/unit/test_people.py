"""Who decided, checked once: actor and note parsing, the sign-in throttle, the console's settings
and its redirect target (no servers: pure functions and an injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, SQLModel, create_engine

import models  # noqa: F401  (every table on the metadata)
from reconciler.adapters import people

from reconciler.core.errors import BadInput
from reconciler.core.people import parse_actor, parse_note, parse_operator_name, parse_role
from reconciler.core.vocabulary import OperatorRole
from worker.config import ConfigError, load_settings
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


@pytest.fixture
def session():
    """A throw-away SQLite database with every table (the throttle's SQL is the adapter's own)."""
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as s:
        yield s


T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)


def test_throttle_locks_a_key_at_its_limit_for_the_cool_down_then_lets_it_in(session):
    for n in range(3):
        assert people.throttle_wait(session, keys=["name:alice", "addr:1"], now=T0) == 0
        locked = people.throttle_failed(session, key="name:alice", limit=3, window=WINDOW, now=T0)
        assert locked is (n == 2)
    assert people.throttle_wait(session, keys=["name:alice", "addr:1"], now=T0) == pytest.approx(60)
    assert people.throttle_wait(session, keys=["name:bob", "addr:1"], now=T0) == 0  # another name: not locked
    assert people.throttle_wait(session, keys=["name:alice"], now=T0 + WINDOW + timedelta(seconds=1)) == 0
    # After the cool-down the count starts again: one more failure does not lock at once.
    assert people.throttle_failed(session, key="name:alice", limit=3, window=WINDOW, now=T0 + 2 * WINDOW) is False


def test_failures_spread_beyond_the_window_never_lock(session):
    for n in range(6):
        people.throttle_failed(session, key="name:alice", limit=3, window=WINDOW, now=T0 + n * timedelta(seconds=40))
    assert people.throttle_wait(session, keys=["name:alice"], now=T0 + timedelta(seconds=241)) == 0


def test_clearing_a_key_lifts_its_lock_and_leaves_others(session):
    for _ in range(2):
        people.throttle_failed(session, key="name:alice", limit=2, window=WINDOW, now=T0)
        people.throttle_failed(session, key="addr:1", limit=2, window=WINDOW, now=T0)
    assert people.throttle_clear(session, key="name:alice") is True
    assert people.throttle_wait(session, keys=["name:alice"], now=T0) == 0
    assert people.throttle_wait(session, keys=["addr:1"], now=T0) > 0


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


def _request(peer: str, headers: dict[str, str]):
    from starlette.requests import Request

    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"", "client": (peer, 50000),
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


@pytest.mark.parametrize("peer, forwarded, name, address", [
    # oauth2-proxy on loopback: it appends the browser's address and its own hop.
    ("127.0.0.1", "203.0.113.7, 127.0.0.1", "alice", "203.0.113.7"),
    # A client's own X-Forwarded-For left of the proxy's hop is its word: the right-most untrusted hop counts.
    ("127.0.0.1", "10.0.0.1, 198.51.100.9", "alice", "198.51.100.9"),
    # Not from a trusted proxy: no name from the header, and the peer is the address, whatever it says.
    ("192.0.2.10", "127.0.0.1", None, "192.0.2.10"),
], ids=["proxied", "forged-left-hops", "untrusted-peer"])
def test_trust_is_decided_by_the_socket_peer_alone(monkeypatch, tmp_path, peer, forwarded, name, address):
    from worker.serve.console.auth import Sessions

    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_PROXY_HEADER", "X-Forwarded-User")
    monkeypatch.setenv("HALO_RECONCILER_CONSOLE_TRUSTED_PROXIES", "127.0.0.1/32")
    sessions = Sessions(load_settings(), "x" * 48)
    request = _request(peer, {"X-Forwarded-User": "alice", "X-Forwarded-For": forwarded})
    assert sessions.proxied_name(request) == name
    assert sessions.client_address(request) == address


def test_every_decision_action_fits_the_audit_column():
    """``decisions.action`` is 16 characters wide (PostgreSQL refuses a longer one, SQLite would not)."""
    from models import OperatorDecision
    from reconciler.core.vocabulary import DecisionAction

    width = OperatorDecision.__table__.c.action.type.length
    assert width == 16
    assert [a for a in DecisionAction if len(a) > width] == []

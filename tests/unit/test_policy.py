"""The verdict table's "default action" column and the configurable policies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from models import Action, TicketKind, TicketReason, Verdict
from reconciler.core.classify import Classification, History
from reconciler.core.policy import GuardState, Policy, decide, decision_for, next_backoff
from tests.utils.builders import recorded

GUID, NEW = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
CALM = GuardState(autoswitch_paused=False, switches_in_window=0, onboarded_practices=100)


def decision(verdict, *, policy=Policy(), guard=CALM, history=History(), new_guid=None, fingerprint=None, rec=None):
    classification = Classification(verdict, "seen", new_guid=new_guid, fingerprint=fingerprint)
    return decision_for(classification, rec or recorded(GUID), policy=policy, guard=guard, history=history)


TABLE = [
    (Verdict.UNCHANGED, Action.MARKED_VERIFIED, None, None),
    (Verdict.INFRASTRUCTURE_CHANGE, Action.SWITCHED, None, None),
    (Verdict.BUSINESS_CHANGE, Action.HELD, TicketKind.CONTACT_PRACTICE, TicketReason.BUSINESS_CHANGE),
    (Verdict.NOT_FOUND, Action.TICKETED, TicketKind.CONTACT_PRACTICE, TicketReason.NOT_FOUND),
    (Verdict.AMBIGUOUS, Action.TICKETED, TicketKind.CONTACT_HALO_SUPPORT, TicketReason.AMBIGUOUS),
    (Verdict.FLAPPING, Action.TICKETED, TicketKind.CONTACT_HALO_SUPPORT, TicketReason.FLAPPING),
    (Verdict.IP_NOT_ALLOWED, Action.TICKETED, TicketKind.CONTACT_HALO_SUPPORT, TicketReason.IP_NOT_ALLOWED),
    (Verdict.QUOTA_EXCEEDED, Action.TICKETED, TicketKind.CONTACT_HALO_SUPPORT, TicketReason.QUOTA_EXCEEDED),
    (Verdict.UNAUTHORIZED, Action.TICKETED, TicketKind.CHECK_INTEGRATION, TicketReason.UNAUTHORIZED),
    (Verdict.HALO_UNAVAILABLE, Action.BACKED_OFF, None, None),
]


@pytest.mark.parametrize("verdict,action,kind,reason", TABLE, ids=[str(row[0]) for row in TABLE])
def test_default_actions(verdict, action, kind, reason):
    result = decision(verdict, new_guid=NEW if verdict is Verdict.INFRASTRUCTURE_CHANGE else None)
    assert result.action is action
    assert (result.ticket.kind, result.ticket.reason) == (kind, reason) if kind else result.ticket is None
    assert result.switch_to == (NEW if action is Action.SWITCHED else None)
    if verdict in (Verdict.IP_NOT_ALLOWED, Verdict.QUOTA_EXCEEDED, Verdict.UNAUTHORIZED):
        assert result.ticket.integrator_wide


def test_persisting_403s_ticket_at_the_threshold_only():
    assert decision(Verdict.UNCHANGED, history=History(forbidden_reports_since_verified=2)).ticket is None
    ticket = decision(Verdict.UNCHANGED, history=History(forbidden_reports_since_verified=3)).ticket
    assert (ticket.kind, ticket.reason) == (TicketKind.CONTACT_HALO_SUPPORT, TicketReason.FORBIDDEN_PERSISTS)


@pytest.mark.parametrize("policy,action,ticket", [
    ("switch", Action.SWITCHED, None),
    ("switch_and_ticket", Action.SWITCHED, TicketReason.INFRASTRUCTURE_CHANGE),
    ("hold", Action.HELD, TicketReason.INFRASTRUCTURE_CHANGE),
])
def test_infrastructure_policies(policy, action, ticket):
    result = decision(Verdict.INFRASTRUCTURE_CHANGE, policy=replace(Policy(), infrastructure=policy), new_guid=NEW)
    assert result.action is action
    assert (result.ticket.reason if result.ticket else None) == ticket


@pytest.mark.parametrize("onboarded,switches,held", [
    (100, 49, False), (100, 50, True),      # max(50, 10) = 50 switches allowed in the hour
    (1000, 99, False), (1000, 100, True),   # max(50, 100) = 100
])
def test_mass_change_guard(onboarded, switches, held):
    guard = GuardState(autoswitch_paused=False, switches_in_window=switches, onboarded_practices=onboarded)
    result = decision(Verdict.INFRASTRUCTURE_CHANGE, guard=guard, new_guid=NEW)
    assert (result.action is Action.HELD) is held
    assert result.trip_guard is held


def test_paused_guard_holds_without_tripping_again():
    guard = GuardState(autoswitch_paused=True, switches_in_window=0, onboarded_practices=10)
    result = decision(Verdict.INFRASTRUCTURE_CHANGE, guard=guard, new_guid=NEW)
    assert (result.action, result.trip_guard, result.hold) == (Action.HELD, False, True)


def test_a_rejected_business_change_does_not_ticket_again():
    rec = replace(recorded(GUID), rejected_fingerprint="abc")
    assert decision(Verdict.BUSINESS_CHANGE, fingerprint="abc", rec=rec).ticket is None
    assert decision(Verdict.BUSINESS_CHANGE, fingerprint="def", rec=rec).ticket is not None


@pytest.mark.parametrize("attempts,low,high", [(0, 30, 60), (1, 60, 120), (5, 960, 1920), (6, 1800, 3600), (40, 1800, 3600)])
def test_backoff_doubles_from_a_minute_to_an_hour(attempts, low, high):
    for fraction in (0.0, 0.5, 1.0):
        wait = next_backoff(attempts, policy=Policy(), random=fraction)
        assert timedelta(seconds=low) <= wait <= timedelta(seconds=high)


# --- decide: the whole change ---------------------------------------------------------------------

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def change(verdict, *, policy=Policy(), guard=CALM, new_guid=None, rec=None):
    classification = Classification(verdict, "seen", new_guid=new_guid)
    return decide(classification, rec or recorded(GUID), policy=policy, guard=guard, history=History(), now=NOW,
                  random=0.5)


def test_decide_carries_the_verdicts_ticket_and_action():
    result = change(Verdict.NOT_FOUND)
    assert result.action is Action.TICKETED
    assert [(t.kind, t.reason, t.integrator_wide) for t in result.tickets] == [
        (TicketKind.CONTACT_PRACTICE, TicketReason.NOT_FOUND, False)]
    assert TicketReason.UNAVAILABLE_PERSISTS in result.resolve  # an answer ends a run of halo_unavailable


def test_a_tripped_guard_holds_and_tickets_the_mass_change_in_the_same_change():
    guard = GuardState(autoswitch_paused=False, switches_in_window=50, onboarded_practices=100)
    result = change(Verdict.INFRASTRUCTURE_CHANGE, guard=guard, new_guid=NEW)
    assert (result.action, result.switch_to, result.pause_autoswitch) == (Action.HELD, None, True)
    assert [(t.reason, t.integrator_wide) for t in result.tickets] == [(TicketReason.MASS_CHANGE, True)]


def test_a_day_of_halo_unavailable_tickets_once_it_persists():
    rec = replace(recorded(GUID), unavailable_since=NOW - timedelta(days=1), backoff_attempts=2)
    result = change(Verdict.HALO_UNAVAILABLE, rec=rec)
    assert result.action is Action.BACKED_OFF
    assert [t.reason for t in result.tickets] == [TicketReason.UNAVAILABLE_PERSISTS]
    assert result.values["backoff_attempts"] == 3 and "last_verified_at" not in result.values
    assert change(Verdict.HALO_UNAVAILABLE, rec=replace(rec, unavailable_since=NOW - timedelta(hours=1))).tickets == ()


def test_a_switch_is_the_would_switch_answer():
    result = change(Verdict.INFRASTRUCTURE_CHANGE, new_guid=NEW)
    assert (result.action, result.switch_to, result.values["halo_guid"]) == (Action.SWITCHED, NEW, NEW)


@pytest.mark.parametrize("verdict", [Verdict.IP_NOT_ALLOWED, Verdict.QUOTA_EXCEEDED, Verdict.UNAUTHORIZED])
def test_a_breaker_ticket_states_the_configured_probe_schedule(verdict):
    policy = replace(Policy(), breaker_probe_seconds=90, breaker_probe_max_seconds=7200)
    detail = decision(verdict, policy=policy).ticket.detail
    assert detail.startswith("seen ")
    assert "probes Halo 90 s after it opened, then waits twice as long after each refused probe (at most 2 h)" in detail
    assert "`halo-reconciler health` says when the next probe is due" in detail
    assert "probes" in decision(verdict).ticket.detail and "1 min after it opened" in decision(verdict).ticket.detail


def test_only_the_breakers_tickets_speak_of_probes():
    for verdict in (Verdict.NOT_FOUND, Verdict.AMBIGUOUS, Verdict.FLAPPING):
        assert "probe" not in decision(verdict).ticket.detail

"""Properties of the pure core, for any input hypothesis can think of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings, strategies as st

from models import Action, PracticeState, Verdict
from reconciler.core.classify import HaloAnswer, History, Recorded, classify
from reconciler.core.identifiers import normalise, normalise_identifiers
from reconciler.core.policy import GuardState, Policy, decision_for, next_backoff
from reconciler.core.halo_errors import HaloBadResponse, HaloServerError, HaloTimeout
from reconciler.core.sites import Site

NOW = datetime(2026, 11, 24, tzinfo=UTC)
GUIDS = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(4)]

names = st.text(min_size=0, max_size=30)
sites = st.builds(
    lambda guid, status, auth, name: Site.model_validate({
        "id": guid, "status": status, "practiceMetadata": {"practiceName": name},
        **({} if auth is None else {"authoritative": auth})}),
    st.sampled_from(GUIDS), st.sampled_from(["initialising", "active", "removed", "uninstalled"]),
    st.sampled_from([True, False, None]), names,
)
errors = st.sampled_from([HaloBadResponse("garbage"), HaloServerError("down", status=503), HaloTimeout("slow")])
answers = st.one_of(
    st.builds(lambda s: HaloAnswer(sites=tuple(s)), st.lists(sites, max_size=4)),
    st.builds(lambda e: HaloAnswer(sites=None, error=e), errors),
)
recordeds = st.builds(
    lambda guid, name: Recorded(practice_id=1, halo_guid=guid, identifiers_normalised=normalise_identifiers(
        {"practice_name": name}), state=PracticeState.ACTIVE),
    st.sampled_from(GUIDS), names,
)
histories = st.builds(
    lambda guids, hours, n: History(previous_guids={g: NOW - timedelta(hours=hours) for g in guids},
                                    forbidden_reports_since_verified=n),
    st.lists(st.sampled_from(GUIDS), max_size=3), st.integers(0, 400), st.integers(0, 10),
)
CALM = GuardState(autoswitch_paused=False, switches_in_window=0, onboarded_practices=10)


@given(st.text())
def test_normalising_is_idempotent(text):
    assert normalise(normalise(text)) == normalise(text)


def expected_verdict(rec: Recorded, answer: HaloAnswer, history: History) -> Verdict:
    """The verdict table of ``reconciler.core.classify``'s docstring, written out again from the inputs
    this module generates (sites named by ``practiceName`` only, errors that are none of 401/403)."""
    if answer.sites is None:
        return Verdict.HALO_UNAVAILABLE
    every_active = [s for s in answer.sites if s.status == "active"]
    active = [s for s in every_active if s.authoritative is not False]  # false is never chosen
    flagged = [s for s in active if s.authoritative is True]
    if not active:
        waiting = [s for s in answer.sites if s.status == "initialising" and s.authoritative is not False]
        return Verdict.INITIALISING if len(waiting) == 1 else Verdict.NOT_FOUND
    if len(flagged) == 1:
        [site] = flagged
    elif not flagged and len(every_active) == 1:
        [site] = active
    else:
        return Verdict.AMBIGUOUS
    if normalise(site.practice_name) != rec.identifiers_normalised["practice_name"]:
        return Verdict.BUSINESS_CHANGE
    if site.id == rec.halo_guid:
        return Verdict.UNCHANGED
    left_at = history.previous_guids.get(site.id)
    if left_at is not None and NOW - left_at <= timedelta(seconds=Policy().flapping_window_seconds):
        return Verdict.FLAPPING
    return Verdict.INFRASTRUCTURE_CHANGE


@given(recordeds, answers, histories)
@settings(max_examples=300)
def test_every_input_gets_exactly_one_verdict_and_it_is_a_function_of_the_input(rec, answer, history):
    first = classify(rec, answer, history, now=NOW, policy=Policy())
    second = classify(rec, answer, history, now=NOW, policy=Policy())
    assert first == second
    assert first.verdict is expected_verdict(rec, answer, history)
    # The verdict's details agree with it: a site only when one was selected, a new GUID only when it moved.
    if first.verdict in (Verdict.HALO_UNAVAILABLE, Verdict.NOT_FOUND, Verdict.AMBIGUOUS):
        assert first.site is None and first.new_guid is None
    elif first.verdict is Verdict.INITIALISING:
        assert first.site is not None and first.site.status == "initialising"
    else:
        assert first.site is not None and first.site in answer.sites and first.site.status == "active"
        assert first.new_guid == (None if first.site.id == rec.halo_guid else first.site.id)
    assert bool(first.differing) is (first.verdict is Verdict.BUSINESS_CHANGE)


@given(recordeds, answers, histories)
@settings(max_examples=300)
def test_default_policy_never_switches_when_identifiers_differ(rec, answer, history):
    result = classify(rec, answer, history, now=NOW, policy=Policy())
    decision = decision_for(result, rec, policy=Policy(), guard=CALM, history=history)
    if result.differing:
        assert decision.switch_to is None
    if decision.switch_to is not None:
        assert result.verdict is Verdict.INFRASTRUCTURE_CHANGE and decision.action is Action.SWITCHED


@given(recordeds, st.builds(lambda e: HaloAnswer(sites=None, error=e), errors), histories)
def test_nothing_switches_on_an_answer_that_did_not_parse(rec, answer, history):
    result = classify(rec, answer, history, now=NOW, policy=Policy())
    assert result.verdict is Verdict.HALO_UNAVAILABLE
    assert decision_for(result, rec, policy=Policy(), guard=CALM, history=history).switch_to is None


@given(st.integers(min_value=-5, max_value=10_000), st.floats(min_value=-1, max_value=2, allow_nan=False))
def test_backoff_stays_in_bounds(attempts, fraction):
    wait = next_backoff(attempts, policy=Policy(), random=fraction).total_seconds()
    assert 30 <= wait <= 3600

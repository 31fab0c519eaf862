"""The classifier, row by row of the verdict table (ids are the verdict names)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models import ForbiddenCause, Verdict
from reconciler.core.classify import HaloAnswer, History, classify
from reconciler.core.policy import Policy
from tests.utils.builders import recorded, site
from reconciler.core.halo_errors import (
    HaloBadResponse, HaloForbidden, HaloNotFound, HaloRateLimited, HaloServerError, HaloTimeout, HaloUnauthorized,
)

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
OLD = "11111111-1111-4111-8111-111111111111"
NEW = "22222222-2222-4222-8222-222222222222"
THIRD = "33333333-3333-4333-8333-333333333333"


def verdict(answer: HaloAnswer, history: History = History(), rec=None) -> Verdict:
    return classify(rec or recorded(OLD), answer, history, now=NOW, policy=Policy()).verdict


def sites(*items) -> HaloAnswer:
    return HaloAnswer(sites=tuple(items))


def error(exc) -> HaloAnswer:
    return HaloAnswer(sites=None, error=exc)


CASES = [
    ("unchanged", sites(site(OLD)), Verdict.UNCHANGED),
    ("unchanged-case-and-space", sites(site(OLD, name="  HALO clinic   SOUTH ")), Verdict.UNCHANGED),
    ("infrastructure_change", sites(site(OLD, status="removed", authoritative=False), site(NEW)),
     Verdict.INFRASTRUCTURE_CHANGE),
    ("business_change-same-guid", sites(site(OLD, name="Other Clinic")), Verdict.BUSINESS_CHANGE),
    ("business_change-new-guid", sites(site(NEW, name="Other Clinic")), Verdict.BUSINESS_CHANGE),
    ("not_found-no-sites", sites(), Verdict.NOT_FOUND),
    ("not_found-removed-but-authoritative", sites(site(OLD, status="removed")), Verdict.NOT_FOUND),
    ("not_found-uninstalled", sites(site(OLD, status="uninstalled")), Verdict.NOT_FOUND),
    ("initialising", sites(site(NEW, status="initialising")), Verdict.INITIALISING),
    ("initialising-beside-a-non-authoritative-backup",
     sites(site(OLD, status="uninstalled"), site(THIRD, authoritative=False), site(NEW, status="initialising")),
     Verdict.INITIALISING),
    ("not_found-two-initialising", sites(site(NEW, status="initialising"), site(THIRD, status="initialising")),
     Verdict.NOT_FOUND),
    ("not_found-only-a-non-authoritative-copy", sites(site(NEW, authoritative=False)), Verdict.NOT_FOUND),
    ("unchanged-non-authoritative-copy-beside", sites(site(OLD), site(NEW, authoritative=False)), Verdict.UNCHANGED),
    ("ambiguous-unflagged-beside-a-non-authoritative-copy",
     sites(site(NEW, authoritative=None), site(THIRD, authoritative=False)), Verdict.AMBIGUOUS),
    ("ambiguous-two-authoritative", sites(site(OLD), site(NEW)), Verdict.AMBIGUOUS),
    ("ambiguous-two-unflagged", sites(site(OLD, authoritative=None), site(NEW, authoritative=None)), Verdict.AMBIGUOUS),
    ("unchanged-flag-absent-single-active", sites(site(OLD, authoritative=None)), Verdict.UNCHANGED),
    ("ip_not_allowed", error(HaloForbidden("Caller Ip Not Allowed", cause=ForbiddenCause.IP_NOT_ALLOWED)),
     Verdict.IP_NOT_ALLOWED),
    ("quota_exceeded", error(HaloForbidden("quota", cause=ForbiddenCause.QUOTA_EXCEEDED)), Verdict.QUOTA_EXCEEDED),
    ("unauthorized", error(HaloUnauthorized("bad key", status=401)), Verdict.UNAUTHORIZED),
    ("halo_unavailable-5xx", error(HaloServerError("down", status=503)), Verdict.HALO_UNAVAILABLE),
    ("halo_unavailable-429", error(HaloRateLimited("slow", status=429, retry_after=3)), Verdict.HALO_UNAVAILABLE),
    ("halo_unavailable-timeout", error(HaloTimeout("slow")), Verdict.HALO_UNAVAILABLE),
    ("halo_unavailable-garbage", error(HaloBadResponse("garbage")), Verdict.HALO_UNAVAILABLE),
    ("halo_unavailable-other-403", error(HaloForbidden("nope", cause=ForbiddenCause.OTHER)), Verdict.HALO_UNAVAILABLE),
    ("halo_unavailable-404", error(HaloNotFound("gone", status=404)), Verdict.HALO_UNAVAILABLE),
]


@pytest.mark.parametrize("answer,expected", [(a, e) for _, a, e in CASES], ids=[name for name, _, _ in CASES])
def test_verdict_table(answer, expected):
    assert verdict(answer) is expected


def test_flapping_within_the_window():
    history = History(previous_guids={NEW: NOW - timedelta(days=6, hours=23)})
    assert verdict(sites(site(NEW)), history) is Verdict.FLAPPING


def test_not_flapping_after_the_window():
    history = History(previous_guids={NEW: NOW - timedelta(days=7, seconds=1)})
    assert verdict(sites(site(NEW)), history) is Verdict.INFRASTRUCTURE_CHANGE


def test_a_recorded_identifier_that_vanishes_is_a_business_change():
    rec = recorded(OLD, abn="12 345 678 901")
    answer = HaloAnswer(sites=(site(OLD),), extra_identifiers={})
    assert verdict(answer, rec=rec) is Verdict.BUSINESS_CHANGE


def test_extra_identifier_from_the_query_compared_after_normalising():
    rec = recorded(OLD, abn="12 345 678 901")
    same = HaloAnswer(sites=(site(OLD),), extra_identifiers={"abn": "12  345 678 901 "})
    other = HaloAnswer(sites=(site(OLD),), extra_identifiers={"abn": "98 765 432 109"})
    assert verdict(same, rec=rec) is Verdict.UNCHANGED
    assert verdict(other, rec=rec) is Verdict.BUSINESS_CHANGE


def test_a_new_identifier_never_recorded_is_not_a_difference():
    answer = HaloAnswer(sites=(site(OLD),), extra_identifiers={"abn": "12 345 678 901"})
    assert verdict(answer) is Verdict.UNCHANGED


def test_raw_values_are_kept_for_the_proposal():
    result = classify(recorded(OLD), sites(site(NEW, name="New Name Pty Ltd")), History(), now=NOW, policy=Policy())
    assert result.seen_identifiers == {"practice_name": "New Name Pty Ltd"}
    assert result.new_guid == NEW and result.fingerprint

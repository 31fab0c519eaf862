"""Halo's site answers: strict about what we act on, lenient about what we only show; Get site status."""

from __future__ import annotations

import json

import httpx
import pytest

from models import Availability, ForbiddenCause, PmsType, SiteStatus
from reconciler.core.halo_errors import HaloBadResponse, HaloForbidden, HaloNotFound, HaloServerError
from tests.unit.test_halo_client import GUID, Script, client, envelope

OTHER_GUID = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"


def a_site(**overrides) -> dict:
    site = {"id": GUID, "status": "active", "availability": "online", "authoritative": True,
            "practiceMetadata": {"practiceName": "Halo Clinic South", "practiceManagementSiteId": "12345"}}
    site.update(overrides)
    return site


def every_documented_property() -> dict:
    """A site carrying every property the published document lists for it."""
    return {
        "id": GUID.upper(), "pmsType": "BestPractice", "availability": "offline", "status": "active",
        "haloLinkVersion": "22.1207.209", "enrichedAt": "2026-01-02T03:04:05Z",
        "catalogue": [{"name": "Patients", "isDefault": True}],
        "practiceMetadata": {"pmsType": "BestPractice", "practiceName": "Halo Clinic South",
                             "practiceManagementSiteId": "12345", "practiceManagementVersion": "3.4.1"},
        "name": "Halo Clinic", "practiceManagementSiteId": "12345", "practiceManagementName": "Best Practice",
        "practiceManagementVersion": "3.4.1", "createdAt": "2022-12-25T12:25:01Z", "authoritative": True,
        "clientTimestampUTC": "2022-12-25T12:25:01Z", "heartbeatTimestampUTC": "2022-12-25T12:25:01Z",
    }


def find(*sites: dict):
    return client(Script(httpx.Response(200, json={"sites": list(sites)}))).find_sites(PmsType.BEST_PRACTICE, "12345")


def status_of(site: dict):
    return client(Script(httpx.Response(200, json=site))).get_site(GUID)


# --- Get site status -----------------------------------------------------------------------------

@pytest.mark.parametrize("status", list(SiteStatus))
@pytest.mark.parametrize("availability", list(Availability))
def test_get_site_returns_the_sites_status_and_availability(status, availability):
    script = Script(httpx.Response(200, json=a_site(status=str(status), availability=str(availability))))
    site = client(script).get_site(GUID.upper())
    assert (site.id, site.status, site.availability) == (GUID, status, availability)
    [request] = script.requests
    assert request.method == "GET" and request.url.path == f"/integrator/sites/{GUID}"


def test_get_site_parses_every_property_the_document_lists():
    site = status_of(every_documented_property())
    assert (site.id, site.status, site.availability, site.pms_type) == (
        GUID, SiteStatus.ACTIVE, Availability.OFFLINE, PmsType.BEST_PRACTICE)
    assert (site.practice_name, site.pms_id, site.authoritative) == ("Halo Clinic South", "12345", True)
    assert site.halo_link_version == "22.1207.209" and site.enriched_at.year == 2026


@pytest.mark.parametrize("message", [
    "Site is not paired with this integrator.",
    "No active pairing with the target site.",
    "Access denied due to missing subscription key. Make sure to include subscription key when making requests to "
    "an API.",  # the document's own 403 example
    "Forbidden",
    None,
], ids=["not-paired", "no-active-pairing", "document-example", "bare", "no-envelope"])
def test_a_403_from_an_unpaired_site_is_a_guid_problem_not_an_integrator_wide_one(message):
    answer = httpx.Response(403, json=envelope(403, message)) if message else httpx.Response(403)
    script = Script(answer)
    with pytest.raises(HaloForbidden) as raised:
        client(script).get_site(GUID)
    assert raised.value.cause is ForbiddenCause.OTHER
    assert raised.value.cause not in (ForbiddenCause.IP_NOT_ALLOWED, ForbiddenCause.QUOTA_EXCEEDED)
    assert len(script.requests) == 1


@pytest.mark.parametrize("message,cause", [
    ("Caller Ip Not Allowed", ForbiddenCause.IP_NOT_ALLOWED),
    ("Out of call volume quota. Quota will be replenished in 00:00:30.", ForbiddenCause.QUOTA_EXCEEDED),
])
def test_a_403_that_says_ip_or_quota_on_get_site_keeps_its_cause(message, cause):
    with pytest.raises(HaloForbidden) as raised:
        client(Script(httpx.Response(403, json=envelope(403, message)))).get_site(GUID)
    assert raised.value.cause is cause


def test_get_site_on_an_unknown_guid_is_not_found():
    with pytest.raises(HaloNotFound):
        client(Script(httpx.Response(404, json=envelope(404, "Site not found.")))).get_site(GUID)


def test_get_site_on_a_struggling_halo_is_retried_then_server_error():
    script = Script(httpx.Response(504, json=envelope(504, "Site is unreachable")))
    with pytest.raises(HaloServerError):
        client(script).get_site(GUID)
    assert len(script.requests) == 4


# --- lenient: what we show but never act on -----------------------------------------------------

def test_a_removed_sibling_with_availability_unknown_does_not_make_find_sites_unparseable():
    active, removed = find(a_site(), a_site(id=OTHER_GUID, status="removed", availability="unknown",
                                            authoritative=False))
    assert active.availability is Availability.ONLINE
    assert (removed.status, removed.availability) == (SiteStatus.REMOVED, None)


@pytest.mark.parametrize("odd,unknown", [
    ({"availability": "unknown"}, lambda site: site.availability),
    ({"availability": "ONLINE"}, lambda site: site.availability),
    ({"availability": 3}, lambda site: site.availability),
    ({"availability": None}, lambda site: site.availability),
    ({"pmsType": "Dentrix"}, lambda site: site.pms_type),
    ({"haloLinkVersion": 22.1}, lambda site: site.halo_link_version),
    ({"enrichedAt": "last tuesday"}, lambda site: site.enriched_at),
    ({"enrichedAt": 12}, lambda site: site.enriched_at),
    ({"practiceMetadata": {"practiceName": "Halo Clinic South", "pmsType": "Best Practice"}},
     lambda site: site.practice_metadata.pms_type),
    ({"practiceMetadata": {"practiceName": "Halo Clinic South", "practiceManagementVersion": 3.4}},
     lambda site: site.practice_metadata.practice_management_version),
    ({"catalogue": "not a list"}, None),
    ({"createdAt": "never"}, None),
    ({"brandNewProperty": {"nested": [1, 2]}}, None),
], ids=["availability-unknown", "availability-upper-case", "availability-number", "availability-null",
        "pms-type-unknown", "halo-link-version-number", "enriched-at-prose", "enriched-at-epoch",
        "metadata-pms-type-query-spelling", "metadata-version-number", "catalogue-string", "created-at-prose",
        "extra-property"])
def test_an_odd_value_where_we_do_not_act_is_recorded_as_unknown_and_the_answer_parses(odd, unknown):
    [site] = find(a_site(**odd))
    assert (site.id, site.status, site.authoritative, site.practice_name) == (
        GUID, SiteStatus.ACTIVE, True, "Halo Clinic South")
    if unknown is not None:
        assert unknown(site) is None


def test_an_unknown_availability_is_null_in_the_audit_summary():
    [site] = find(a_site(availability="unknown"))
    assert site.summary()["availability"] is None


# --- strict: what we act on ------------------------------------------------------------------------

@pytest.mark.parametrize("authoritative,expected", [(True, True), (False, False)], ids=["true", "false"])
def test_authoritative_is_read_as_given(authoritative, expected):
    [site] = find(a_site(authoritative=authoritative))
    assert site.authoritative is expected


def test_authoritative_absent_is_none_not_false():
    body = a_site()
    del body["authoritative"]
    [site] = find(body)
    assert site.authoritative is None and site.authoritative is not False


@pytest.mark.parametrize("bad", [
    {"id": None}, {"id": "not-a-guid"}, {"id": 12345}, {"id": ""},
    {"status": None}, {"status": "sideways"}, {"status": "Active"}, {"status": 1},
    {"authoritative": "true"}, {"authoritative": 1}, {"authoritative": "yes"}, {"authoritative": [True]},
    {"practiceMetadata": "Halo Clinic South"}, {"practiceMetadata": {"practiceName": 42}},
    {"practiceMetadata": {"practiceName": "A", "practiceManagementSiteId": 12345}},
    {"name": ["Halo Clinic"]}, {"practiceManagementSiteId": 12345},
], ids=lambda bad: "-".join(f"{k}={v}" for k, v in bad.items())[:40])
def test_an_invalid_value_we_act_on_rejects_the_answer(bad):
    with pytest.raises(HaloBadResponse):
        find(a_site(**bad))
    with pytest.raises(HaloBadResponse):
        status_of(a_site(**bad))


@pytest.mark.parametrize("missing", ["id", "status"])
def test_a_site_without_its_guid_or_status_rejects_the_answer(missing):
    body = a_site()
    del body[missing]
    with pytest.raises(HaloBadResponse):
        find(body)


def test_one_garbled_site_rejects_the_whole_find_sites_answer_rather_than_being_left_out():
    script = Script(httpx.Response(200, json={"sites": [a_site(id=OTHER_GUID, authoritative=False),
                                                        a_site(id="garbled", authoritative=True)]}))
    with pytest.raises(HaloBadResponse):
        client(script).find_sites(PmsType.BEST_PRACTICE, "12345")
    assert len(script.requests) == 1


@pytest.mark.parametrize("body", [
    {"sites": None}, {"sites": {"id": GUID}}, {"sites": [None]}, {"sites": ["3f2504e0"]}, [a_site()],
], ids=["null", "object", "null-site", "string-site", "bare-list"])
def test_a_find_sites_answer_of_the_wrong_shape_is_a_bad_response(body):
    with pytest.raises(HaloBadResponse):
        client(Script(httpx.Response(200, content=json.dumps(body)))).find_sites(PmsType.ZEDMED, "1")


def test_the_guid_is_stored_in_its_canonical_spelling():
    [site] = find(a_site(id="{" + GUID.upper() + "}"))
    assert site.id == GUID


def test_every_halo_string_is_bounded_at_parse_time():
    # issue 24 (Medium): a practiceName of 2,000,000 characters became a ticket detail of 2,000,238.
    from reconciler.core.sites import HALO_TEXT_MAX, QUERY_MAX_ROWS, QueryResult, Site

    huge = "N" * 2_000_000
    site = Site.model_validate({
        "id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "status": "active", "name": huge,
        "practiceManagementSiteId": huge, "haloLinkVersion": huge,
        "practiceMetadata": {"practiceName": huge, "practiceManagementSiteId": huge,
                             "practiceManagementVersion": huge}})
    assert site.practice_name == "N" * HALO_TEXT_MAX
    assert len(site.name) == len(site.pms_id) == len(site.practice_management_site_id) == HALO_TEXT_MAX
    assert len(site.halo_link_version) == len(site.practice_metadata.practice_management_version) == HALO_TEXT_MAX
    result = QueryResult.model_validate({"query_id": huge, "rows": [{huge: huge, "n": 3}] * 1000})
    assert len(result.query_id) == HALO_TEXT_MAX and len(result.rows) == QUERY_MAX_ROWS
    assert result.rows[0] == {"N" * HALO_TEXT_MAX: "N" * HALO_TEXT_MAX, "n": 3}

"""The finished-run message: its round trip, and which runs settle a waiting report (its publish, in
the run's finish round trip: tests/integration/test_runs.py)."""

from __future__ import annotations

import pytest

from reconciler.core.work import RunFinished

OLD = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
NEW = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def finished(**changes) -> RunFinished:
    fields = {"practice_id": 1, "guid": OLD, "current_guid": OLD, "action": "marked_verified", "answered": True,
              "again": False}
    return RunFinished(**{**fields, **changes})


def test_the_message_round_trips_and_anything_else_is_ignored():
    run = finished(current_guid=NEW, action="switched")
    assert RunFinished.parse(run.to_json()) == run
    assert RunFinished.parse(run.to_json().encode()) == run
    for junk in (b"", b"[]", b"{}", b"not json", b'{"practice_id": "x"}'):
        assert RunFinished.parse(junk) is None


@pytest.mark.parametrize(("run", "settles"), [
    (finished(current_guid=NEW, action="switched"), True),  # the reported GUID was left
    (finished(), True),  # Halo confirmed it and nothing more is queued
    (finished(again=True), False),  # a report the run did not answer: one more run follows
    (finished(answered=False, action=None), False),  # skipped (backoff, breaker): the work was kept
    (finished(current_guid=NEW, again=True, action="switched"), True),
], ids=["switched", "confirmed", "follow_up", "skipped", "switched_and_more"])
def test_which_runs_settle_a_report(run, settles):
    assert run.settles(OLD) is settles


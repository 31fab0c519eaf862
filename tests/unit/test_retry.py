"""``retry_in``: the one rule for whether and when a reconciliation that raised is tried again."""

from __future__ import annotations

import pytest

from reconciler.core.errors import Busy, CoordinationUnavailable, InvalidState
from reconciler.usecases.reconcile import retry_in


class DatabaseAway(Exception):
    pass


def test_busy_comes_back_when_the_claim_can_be_ours():
    assert retry_in(Busy("held", retry_in=7.5), retries=3, random=0.9) == 7.5


@pytest.mark.parametrize("retries,ceiling", [(0, 2), (1, 4), (4, 32), (7, 256), (8, 300), (30, 300)])
def test_a_store_briefly_away_backs_off_with_full_jitter_up_to_five_minutes(retries, ceiling):
    for error in (CoordinationUnavailable("down"), DatabaseAway()):
        assert retry_in(error, retries=retries, transient=(DatabaseAway,), random=1.0) == ceiling
        assert retry_in(error, retries=retries, transient=(DatabaseAway,), random=0.0) == 0


def test_anything_else_is_not_retried():
    assert retry_in(InvalidState("kept changing"), retries=0, random=0.5) is None
    assert retry_in(DatabaseAway(), retries=0, random=0.5) is None  # not named transient
    assert retry_in(ValueError("bug"), retries=0, random=0.5) is None

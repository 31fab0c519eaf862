"""The one more run a report asks for while a run holds the practice (``publish_follow_up``):
re-checked when the run's answer is no longer fresh (the re-check delay), as a report arriving just
after the run would be; at once when the run had no answer. Real Valkey; the run itself is stood in for (its result and its marks)."""

from __future__ import annotations

import pytest

import tasks.reconcile as task_module
from models import Action, Trigger, Verdict
from reconciler.usecases.reconcile import ReconcileResult
from tests.integration.conftest import use_environment
from worker import wiring

PID, GUID = 7, "5a1d3c2e-0000-4000-8000-00000000abcd"


@pytest.fixture
def published(monkeypatch, tmp_path, redis_url):
    use_environment(monkeypatch, {"BROKER_URL": redis_url, "HALO_RECONCILER_DATA_DIR": str(tmp_path),
                                  "HALO_SUBSCRIPTION_KEY": "follow-up-test-key", "HALO_BASE_URL": "http://127.0.0.1:9"})
    wiring.coordination().redis.flushall()
    sent: list[dict] = []
    monkeypatch.setattr(task_module.reconcile_practice, "apply_async", lambda *a, **kw: sent.append(kw))
    return sent


def _run_that(monkeypatch, *, answered: bool) -> None:
    def run(practice_id, **_):  # noqa: ANN001, ANN202
        # What the real run's finish leaves: the answer noted (fresh for the re-check delay), or none.
        wiring.coordination().note_reconciled(practice_id, current_guid=GUID, replaced_guid=None,
                                              confirmed=True if answered else None)
        verdict = Verdict.UNCHANGED if answered else Verdict.HALO_UNAVAILABLE
        return ReconcileResult(practice_id=practice_id, trigger=Trigger.FORBIDDEN, verdict=verdict,
                               action=Action.MARKED_VERIFIED if answered else Action.BACKED_OFF,
                               old_guid=GUID, again=True)

    monkeypatch.setattr(task_module, "reconcile", run)


def test_a_report_during_an_answered_run_is_rechecked_after_the_delay_not_at_once(monkeypatch, published):
    _run_that(monkeypatch, answered=True)
    task_module.reconcile_practice.apply(args=[PID, "forbidden"])
    [sent] = published
    # The first confirmation's delay is HALO_RECONCILER_RECHECK_MIN_SECONDS (10 s by default).
    assert 9.0 < sent["countdown"] <= 10.0
    assert sent["args"] == [PID, "forbidden"]


def test_a_report_during_a_run_without_an_answer_runs_again_at_once(monkeypatch, published):
    _run_that(monkeypatch, answered=False)
    task_module.reconcile_practice.apply(args=[PID, "forbidden"])
    [sent] = published
    assert sent["countdown"] is None

"""Two people for a business change (PRODUCT.md, "Two people for a business change, when asked"), and
an approval Halo overtook audited as its own action: the real command line against a simulator on
loopback (embedded SQLite and Valkey)."""

from __future__ import annotations

import pytest

from models import PmsType
from tests.utils.cli import run, run_json
from tests.utils.pairing import recording_simulator
from worker.config import get_settings

pytestmark = pytest.mark.integration

KEY = "two-approvals-key-41aa"


@pytest.fixture
def sim(monkeypatch):
    with recording_simulator(monkeypatch, KEY) as simulator:
        yield simulator


@pytest.fixture
def two(monkeypatch):
    monkeypatch.setenv("HALO_RECONCILER_APPROVALS_REQUIRED", "2")
    get_settings.cache_clear()


def held(sim, capsys, pms_id: str = "BP1") -> int:
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id=pms_id, practice_name="Halo Clinic")
    pid = run_json(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", pms_id)["id"]
    new = sim.change_guid(PmsType.BEST_PRACTICE, pms_id)
    sim.rename(new, "Other Clinic")
    assert run_json(capsys, "reconcile", str(pid), "--now")["action"] == "held"
    return pid


def test_the_default_is_one_approval(sim, capsys):
    assert get_settings().approvals_required == 1
    pid = held(sim, capsys)
    assert run_json(capsys, "approve", str(pid), "--by", "alice")["state"] == "active"


def test_a_business_change_switches_on_the_second_approval_by_another_person(sim, capsys, two):
    pid = held(sim, capsys)
    proposed = run_json(capsys, "practices", "show", str(pid))["proposed_guid"]
    calls = len(sim.requests)

    code, out, err = run(capsys, "approve", str(pid), "--by", "alice", "--note", "owner confirmed")
    assert code == 0 and "1 more approval" in out and "alice" in out
    assert run_json(capsys, "practices", "show", str(pid))["state"] == "held"
    assert len(sim.requests) == calls  # the first approval asks Halo nothing
    [first] = [e for e in run_json(capsys, "audit", "--practice", str(pid)) if e["actor"] == "alice"]
    assert (first["action"], first["note"]) == ("approved", "owner confirmed")
    assert "1 of 2" in first["detail"]

    code, out, err = run(capsys, "approve", str(pid), "--by", "alice")  # the same person again
    assert code == 1 and out == "" and "already approved" in err and err.count("\n") == 1
    assert run_json(capsys, "practices", "show", str(pid))["state"] == "held"
    assert len([e for e in run_json(capsys, "audit", "--practice", str(pid)) if e["actor"] == "alice"]) == 1

    switched = run_json(capsys, "approve", str(pid), "--by", "bob")
    assert (switched["state"], switched["halo_guid"]) == ("active", proposed)
    entries = run_json(capsys, "audit", "--practice", str(pid))
    assert [(e["actor"], e["action"]) for e in entries[:2]] == [("bob", "approved"), ("alice", "approved")]
    assert "switched from" in entries[0]["detail"]


def test_a_new_proposal_discards_the_approvals_given_to_the_old_one(sim, capsys, two):
    pid = held(sim, capsys)
    assert run(capsys, "approve", str(pid), "--by", "alice")[0] == 0

    moved = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")  # Halo proposes something else
    sim.rename(moved, "Third Clinic")
    assert run_json(capsys, "reconcile", str(pid), "--now")["action"] == "held"
    assert run_json(capsys, "practices", "show", str(pid))["proposed_guid"] == moved

    # bob's approval is the first for the new proposal: alice's was for the old one.
    code, out, err = run(capsys, "approve", str(pid), "--by", "bob")
    assert code == 0 and "1 more approval" in out and "alice" not in out
    assert run_json(capsys, "practices", "show", str(pid))["state"] == "held"
    assert run_json(capsys, "approve", str(pid), "--by", "alice")["halo_guid"] == moved


def test_the_same_proposal_held_again_after_it_was_let_go_starts_from_no_approval(sim, capsys, two):
    pid = held(sim, capsys)
    proposed = run_json(capsys, "practices", "show", str(pid))["proposed_guid"]
    assert run(capsys, "approve", str(pid), "--by", "alice")[0] == 0
    sim.set_status(proposed, "removed")  # Halo shows no site: not_found lets the proposal go
    assert run_json(capsys, "reconcile", str(pid), "--now")["verdict"] == "not_found"
    assert run_json(capsys, "practices", "show", str(pid))["proposed_guid"] is None
    sim.set_status(proposed, "active")  # and the same proposal comes back
    assert run_json(capsys, "reconcile", str(pid), "--now")["action"] == "held"

    code, out, err = run(capsys, "approve", str(pid), "--by", "bob")
    assert code == 0 and "1 more approval" in out and "alice" not in out  # alice approved the old hold


def test_an_approval_halo_overtook_is_audited_as_approve_refused(sim, capsys):
    pid = held(sim, capsys, "BP8")
    moved = sim.change_guid(PmsType.BEST_PRACTICE, "BP8")

    code, out, err = run(capsys, "approve", str(pid), "--by", "alice")

    assert code == 1 and "did not switch" in err
    [entry] = [e for e in run_json(capsys, "audit", "--practice", str(pid)) if e["actor"] == "alice"]
    assert entry["action"] == "approve_refused" and "nothing switched" in entry["detail"]
    assert run_json(capsys, "practices", "show", str(pid))["proposed_guid"] == moved


def test_two_approvals_that_landed_together_are_never_left_waiting(sim, capsys, two):
    """Two people approving at the same moment each see none given and each record the first: the
    recount after writing (or either of them approving again) completes the change."""
    from datetime import UTC, datetime

    from reconciler.adapters.store import SqlStore
    from reconciler.usecases.decisions import proposal_fingerprint
    from worker import admin

    pid = held(sim, capsys)
    with admin.unit_of_work() as session:
        store = SqlStore(session)
        proposal = proposal_fingerprint(store, store.practice(pid))
        for name in ("alice", "bob"):  # as the two concurrent approvals left them
            store.add_approval(pid, fingerprint=proposal, actor=name, now=datetime.now(UTC))
        session.commit()

    switched = run_json(capsys, "approve", str(pid), "--by", "alice")

    assert switched["state"] == "active"
    assert admin.approvals(pid) == {"required": 0, "approved_by": []}  # decided: the approvals are gone

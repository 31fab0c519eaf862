"""Who decided: --by and --note on every decision, ``audit``, and the console's operators, through the
real command line against a simulator on loopback (embedded SQLite and Valkey)."""

from __future__ import annotations

import getpass
import io

import pytest

from models import PmsType
from tests.utils.pairing import recording_simulator
from worker import db
from tests.utils.cli import run, run_json

pytestmark = pytest.mark.integration  # a simulator on loopback and the embedded Valkey

KEY = "audit-test-key-6c2e"
AUDIT_KEYS = {"at", "actor", "action", "practice_id", "ticket_id", "note", "detail"}


@pytest.fixture
def sim(monkeypatch):
    with recording_simulator(monkeypatch, KEY) as simulator:
        yield simulator


def held_business_change(sim, capsys, pms_id: str = "BP1") -> tuple[int, int]:
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id=pms_id, practice_name="Halo Clinic")
    pid = run_json(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", pms_id)["id"]
    new = sim.change_guid(PmsType.BEST_PRACTICE, pms_id)
    sim.rename(new, "Other Clinic")
    result = run_json(capsys, "reconcile", str(pid), "--now")
    assert result["action"] == "held"
    return pid, result["ticket_id"]


def test_every_decision_carries_its_actor_and_note_and_audit_lists_them_newest_first(sim, capsys):
    pid, ticket = held_business_change(sim, capsys)

    run_json(capsys, "tickets", "ack", str(ticket), "--by", "Alice Ng", "--note", "calling the practice")
    run_json(capsys, "approve", str(pid), "--by", "alice", "--note", "practice confirmed the new owner")
    run_json(capsys, "autoswitch", "pause", "--by", "bob", "--note", "Halo incident")
    run_json(capsys, "autoswitch", "resume", "--by", "bob")

    entries = run_json(capsys, "audit")
    assert all(e.keys() == AUDIT_KEYS for e in entries)
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    assert [(e["actor"], e["action"], e["note"]) for e in entries] == [
        ("bob", "resumed", None),
        ("bob", "paused", "Halo incident"),
        ("alice", "approved", "practice confirmed the new owner"),
        ("Alice Ng", "acknowledged", "calling the practice"),
        ("worker", "held", None),
    ]
    approved = entries[2]
    assert (approved["practice_id"], approved["ticket_id"]) == (pid, ticket)
    assert "switched from" in approved["detail"]
    assert entries[0]["practice_id"] is None  # the guard is integrator-wide
    assert "business_change" in entries[-1]["detail"]


def test_reject_is_a_decision_and_audit_keeps_to_one_practice(sim, capsys):
    pid, ticket = held_business_change(sim, capsys)
    run_json(capsys, "reject", str(pid), "--by", "carol", "--note", "a different practice")
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z1", practice_name="Zed")
    zid = run_json(capsys, "practices", "add", "--pms-type", "Zedmed", "--pms-id", "Z1")["id"]
    [resolved] = [t for t in run_json(capsys, "tickets", "list", "--status", "resolved") if t["id"] == ticket]

    entries = run_json(capsys, "audit", "--practice", str(pid))
    assert [(e["actor"], e["action"]) for e in entries] == [("carol", "rejected"), ("worker", "held")]
    assert {e["practice_id"] for e in entries} == {pid}
    assert run_json(capsys, "audit", "--practice", str(zid)) == []
    assert resolved["status"] == "resolved"
    assert "kept" in entries[0]["detail"] and entries[0]["ticket_id"] == ticket


def test_by_defaults_to_the_operating_system_user(sim, capsys):
    pid, ticket = held_business_change(sim, capsys)
    run_json(capsys, "tickets", "resolve", str(ticket))
    [entry] = [e for e in run_json(capsys, "audit") if e["action"] == "resolved"]
    assert (entry["actor"], entry["ticket_id"], entry["practice_id"]) == (getpass.getuser(), ticket, pid)


@pytest.mark.parametrize("argv", [
    ["audit", "--practice", "999"],
    ["audit", "--practice", "x"],
    ["approve", "1", "--by", "   "],
    ["approve", "1", "--by", "worker"],
    ["tickets", "ack", "1", "--by", "a" * 200],
    ["tickets", "ack", "1", "--note", "n" * 1001],
    ["autoswitch", "pause", "--by", "bad\x07name"],
])
def test_bad_decision_input_exits_2_and_changes_nothing(sim, capsys, argv):
    pid, ticket = held_business_change(sim, capsys)
    before = run_json(capsys, "audit")
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert run_json(capsys, "audit") == before
    assert run_json(capsys, "practices", "show", str(pid))["state"] == "held"
    assert run_json(capsys, "autoswitch", "status")["paused"] is False


def test_practices_show_points_at_the_audit(sim, capsys):
    pid, _ = held_business_change(sim, capsys)
    code, out, _ = run(capsys, "practices", "show", str(pid))
    assert code == 0 and f"halo-reconciler audit --practice {pid}" in out and f"/practices/{pid}" in out


def test_operators_add_list_remove(sim, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    added = run_json(capsys, "operators", "add", "alice", "--role", "approver", "--password-stdin")
    assert (added["name"], added["role"]) == ("alice", "approver") and "password_hash" not in added
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    run_json(capsys, "operators", "add", "victor", "--role", "viewer", "--password-stdin")

    listed = run_json(capsys, "operators", "list")
    assert [(o["name"], o["role"]) for o in listed] == [("alice", "approver"), ("victor", "viewer")]
    assert all(o.keys() == {"name", "role", "created_at", "disabled_at"} for o in listed)

    from models import Operator
    from sqlmodel import select

    with db.new_session() as session:
        hashes = {o.name: o.password_hash for o in session.exec(select(Operator))}
    assert hashes["alice"].startswith("$argon2id$") and "correct horse" not in hashes["alice"]

    assert run_json(capsys, "operators", "remove", "victor") == {"removed": "victor"}
    assert [o["name"] for o in run_json(capsys, "operators", "list")] == ["alice"]


@pytest.mark.parametrize("argv, stdin", [
    (["operators", "add", "bob", "--role", "root", "--password-stdin"], "long enough password\n"),
    (["operators", "add", "bob", "--role", "viewer", "--password-stdin"], "short\n"),
    (["operators", "add", "b o b", "--role", "viewer", "--password-stdin"], "long enough password\n"),
    (["operators", "add", "alice", "--role", "viewer", "--password-stdin"], "long enough password\n"),
    (["operators", "add", "bob", "--role", "viewer"], "long enough password\n"),  # no terminal, no flag
    (["operators", "remove", "nobody"], ""),
    (["operators", "role", "nobody", "--role", "admin"], ""),
    (["operators", "role", "alice", "--role", "root"], ""),
    (["operators", "role", "alice", "--role", "approver"], ""),  # already: nothing to change, nothing audited
    (["operators", "disable", "alice", "--by", "worker"], ""),
])
def test_bad_operator_input_exits_2_and_changes_nothing(sim, capsys, monkeypatch, argv, stdin):
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    run_json(capsys, "operators", "add", "alice", "--role", "approver", "--password-stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    before = run_json(capsys, "audit")
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert [o["name"] for o in run_json(capsys, "operators", "list")] == ["alice"]
    assert run_json(capsys, "audit") == before  # a refused change to an operator is no decision


def test_managing_operators_is_audited_with_who_why_and_which_operator(sim, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    run_json(capsys, "operators", "add", "alice", "--role", "approver", "--password-stdin", "--by", "carol",
             "--note", "joins the support desk")
    run_json(capsys, "operators", "disable", "alice", "--by", "carol", "--note", "on leave")
    run_json(capsys, "operators", "enable", "alice", "--by", "dave")
    run_json(capsys, "operators", "unlock", "alice", "--by", "dave")
    assert run_json(capsys, "operators", "role", "alice", "--role", "admin", "--by", "dave")["role"] == "admin"
    run_json(capsys, "operators", "remove", "alice")  # --by defaults to the operating-system user

    entries = run_json(capsys, "audit")
    assert all(e.keys() == {"at", "actor", "action", "practice_id", "ticket_id", "note", "detail"} for e in entries)
    assert [(e["actor"], e["action"], e["note"], e["detail"]) for e in entries] == [
        (getpass.getuser(), "removed", None, "operator alice"),
        ("dave", "role_changed", None, "operator alice: role approver -> admin"),
        ("dave", "unlocked", None, "operator alice: was not locked: nothing to lift"),
        ("dave", "enabled", None, "operator alice"),
        ("carol", "disabled", "on leave", "operator alice: signing in refused, sessions ended"),
        ("carol", "added", "joins the support desk", "operator alice: role approver"),
    ]
    assert {(e["practice_id"], e["ticket_id"]) for e in entries} == {(None, None)}
    assert [e["action"] for e in run_json(capsys, "audit", "--actor", "carol")] == ["disabled", "added"]
    assert [e["actor"] for e in run_json(capsys, "audit", "--action", "enabled")] == ["dave"]

"""The command line as an operator meets it: real HTTP to a simulator on loopback, the embedded SQLite."""

from __future__ import annotations

import json

import pytest

from models import PmsType
from tests.utils.cli import run, run_json
from tests.utils.pairing import recording_simulator
from worker.simulator import Fault

pytestmark = pytest.mark.integration  # a simulator on loopback and the embedded Valkey, a process

KEY = "cli-test-key-93b1c0"


@pytest.fixture
def sim(monkeypatch):
    with recording_simulator(monkeypatch, KEY) as simulator:
        yield simulator


def test_practices_add_prints_the_contract_fields(sim, capsys):
    guid = sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="12345", practice_name="Halo Clinic South")

    practice = run_json(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "12345")

    assert {"id", "pms_type", "pms_id", "halo_guid", "practice_name", "identifiers", "state", "proposed_guid",
            "last_verified_at", "last_verdict", "next_attempt_at", "guid_history"} <= practice.keys()
    assert (practice["pms_type"], practice["pms_id"], practice["halo_guid"]) == ("BestPractice", "12345", guid)
    assert (practice["practice_name"], practice["state"], practice["last_verdict"]) == ("Halo Clinic South", "active", None)
    assert practice["identifiers"] == {"practice_name": "Halo Clinic South"}
    [period] = practice["guid_history"]
    assert (period["guid"], period["until"], period["reason"]) == (guid, None, "onboarded")
    assert isinstance(practice["id"], int)


def test_practices_add_twice_is_bad_input(sim, capsys):
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z1", practice_name="Zed Clinic")
    assert run(capsys, "practices", "add", "--pms-type", "Zedmed", "--pms-id", "Z1")[0] == 0

    code, out, err = run(capsys, "practices", "add", "--pms-type", "Zedmed", "--pms-id", "Z1")

    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "already onboarded" in err


def test_practices_add_refuses_when_halo_has_no_authoritative_site(sim, capsys):
    code, out, err = run(capsys, "practices", "add", "--pms-type", "D4w", "--pms-id", "nobody")
    assert code == 1
    assert "no single authoritative active site" in err
    assert run_json(capsys, "practices", "list") == []


@pytest.mark.parametrize("argv", [
    ["practices", "add", "--pms-type", "Best Practice", "--pms-id", "1"],
    ["practices", "add", "--pms-type", "BestPractice", "--pms-id", "  "],
    ["practices", "show", "999"],
    ["practices", "show", "--guid", "not-a-guid"],
    ["practices", "show", "--guid", "3f2504e0-4f89-41d3-9a0c-0305e82c3301"],
    ["practices", "show"],
    ["practices", "show", "notanumber"],
    ["practices", "frobnicate"],
    ["tickets", "resolve", "12345"],
    ["tickets", "list", "--status", "sideways"],
    ["approve", "77"],
    # issue 24 (Low): ids and ages past what a database or a timedelta holds were an OverflowError, exit 1
    ["reconcile", "99999999999999999999999", "--now"],
    ["sweep", "--now", "--older-than", "999999999999999999999"],
    ["practices", "show", "99999999999999999999999"],
    ["tickets", "ack", "99999999999999999999999"],
    ["audit", "--practice", "99999999999999999999999"],
    ["reconcile", "1", "--take-over"],  # the override runs the practice here: it needs --now
    # and a nameless operator was told about --by
    ["operators", "add", "", "--role", "viewer", "--password-stdin"],
], ids=lambda a: " ".join(a))
def test_bad_input_exits_2_with_one_line(sim, capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err and "--by" not in err


def test_refused_key_exits_1_without_printing_the_key(sim, capsys, monkeypatch):
    wrong = "wrong-key-5d1e2f9a"
    monkeypatch.setenv("HALO_SUBSCRIPTION_KEY", wrong)
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="1", practice_name="A")

    code, out, err = run(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "1")

    assert code == 1
    assert "subscription key" in err and wrong not in err and KEY not in err


def test_show_by_id_by_any_guid_and_by_pms(sim, capsys):
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Halo Clinic")
    added = run_json(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP1")
    old = added["halo_guid"]
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    verdict = run_json(capsys, "reconcile", str(added["id"]), "--now")
    assert (verdict["verdict"], verdict["old_guid"], verdict["new_guid"]) == ("infrastructure_change", old, new)

    by_id = run_json(capsys, "practices", "show", str(added["id"]))
    by_old = run_json(capsys, "practices", "show", "--guid", old.upper())
    by_new = run_json(capsys, "practices", "show", "--guid", new)
    by_pms = run_json(capsys, "practices", "show", "--pms-type", "BestPractice", "--pms-id", "BP1")

    assert by_id == by_old == by_new == by_pms
    assert [p["guid"] for p in by_id["guid_history"]] == [old, new]
    assert by_id["guid_history"][0]["until"] is not None and by_id["guid_history"][1]["until"] is None
    assert by_id["last_verdict"] == "infrastructure_change"


def test_reconcile_now_prints_the_verdict_word_and_exits_0_even_when_halo_is_down(sim, capsys):
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Halo Clinic")
    pid = run_json(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP1")["id"]
    sim.inject(Fault("server_error", status=503))

    code, out, err = run(capsys, "reconcile", str(pid), "--now")
    assert code == 0, err
    assert "halo_unavailable" in out

    result = run_json(capsys, "reconcile", "--pms-type", "BestPractice", "--pms-id", "BP1", "--now")
    assert {"practice_id", "verdict", "action", "old_guid", "new_guid", "ticket_id"} <= result.keys()
    assert result["verdict"] == "halo_unavailable"  # a manual run goes ahead despite the backoff


def test_business_change_ticket_then_approve_resolves_it(sim, capsys):
    guid = sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Halo Clinic")
    pid = run_json(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP1")["id"]
    sim.rename(guid, "Other Clinic")

    result = run_json(capsys, "reconcile", str(pid), "--now")
    [ticket] = run_json(capsys, "tickets", "list")
    assert result["ticket_id"] == ticket["id"]
    assert {"id", "kind", "reason", "status", "practice_id", "occurrences", "opened_at", "last_seen_at",
            "resolved_at", "detail"} <= ticket.keys()
    assert (ticket["kind"], ticket["reason"], ticket["status"], ticket["practice_id"]) == (
        "contact_practice", "business_change", "open", pid)
    assert run_json(capsys, "practices", "show", str(pid))["state"] == "held"

    assert run_json(capsys, "tickets", "ack", str(ticket["id"]))["status"] == "acknowledged"
    approved = run_json(capsys, "approve", str(pid))
    assert (approved["state"], approved["practice_name"]) == ("active", "Other Clinic")
    assert run_json(capsys, "tickets", "list") == []
    assert run_json(capsys, "tickets", "list", "--status", "resolved")[0]["resolved_at"] is not None


def test_autoswitch_pause_and_resume(sim, capsys):
    assert run_json(capsys, "autoswitch", "status")["paused"] is False
    assert run_json(capsys, "autoswitch", "pause")["paused"] is True
    assert run_json(capsys, "autoswitch", "resume")["paused"] is False
    assert run(capsys, "autoswitch", "sideways")[0] == 2


def test_import_onboards_good_rows_and_reports_bad_ones(sim, capsys, tmp_path):
    for i in range(3):
        sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id=f"BP{i}", practice_name=f"Clinic {i}")
    csv_file = tmp_path / "practices.csv"
    csv_file.write_text("pms_type,pms_id\nBestPractice,BP0\nBestPractice,BP1\nNotAPms,BP9\nBestPractice,missing\n"
                        "BestPractice,BP2\n")

    code, out, err = run(capsys, "practices", "import", str(csv_file), "--json")

    summary = json.loads(out)
    assert code == 1
    assert summary["onboarded"] == 3
    assert [(f["line"], f["pms_id"]) for f in summary["failed"]] == [(4, "BP9"), (5, "missing")]
    assert len(run_json(capsys, "practices", "list")) == 3

    code, out, _ = run(capsys, "practices", "import", str(csv_file), "--json")
    assert json.loads(out)["already_onboarded"] == 3


@pytest.mark.parametrize("content", [b"pms,id\nBestPractice,1\n", b"\x00\x01\x02binary", b"\xff\xfe\xfa"])
def test_import_refuses_a_file_that_is_not_our_csv(sim, capsys, tmp_path, content):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    code, out, err = run(capsys, "practices", "import", str(bad))
    assert code == 2 and out == "" and err.count("\n") == 1


def test_import_of_a_missing_file_is_bad_input(sim, capsys, tmp_path):
    assert run(capsys, "practices", "import", str(tmp_path / "nope.csv"))[0] == 2


def test_enqueueing_with_the_broker_down_is_one_line_and_exit_1(sim, capsys, monkeypatch):
    from tests.utils.servers import free_port

    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Clinic")
    assert run(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP1")[0] == 0
    monkeypatch.setenv("BROKER_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")  # nothing listens there
    from worker.celery_app import follow_settings
    from worker.config import get_settings

    get_settings.cache_clear()
    follow_settings()
    for argv in (["reconcile", "1"], ["sweep"]):
        code, out, err = run(capsys, *argv)
        assert code == 1, err
        assert "unreachable" in err and "Traceback" not in err and "hunter2" not in err


def test_health_is_ok_then_names_what_is_wrong(sim, capsys, monkeypatch):
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Clinic")
    assert run(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP1")[0] == 0
    report = run_json(capsys, "health")
    assert report["healthy"] is True
    assert [c["name"] for c in report["checks"]] == ["database", "broker", "sweep", "breaker", "outbox", "halo"]

    sim.inject(Fault("unauthorized"))
    code, out, err = run(capsys, "health")
    assert code == 1
    assert "FAIL halo" in err and "401" in err and KEY not in out + err
    assert "ok   database" in out and "ok   broker" in out
    sim.clear_faults()

    from reconciler.adapters.coordination import keys
    from worker.coordination import get_redis

    get_redis().set(keys.last_sweep(), "2020-01-01T00:00:00+00:00")
    code, out, err = run(capsys, "health", "--skip-halo")
    assert code == 1 and "FAIL sweep" in err and "halo" not in out
    get_redis().delete(keys.last_sweep())


def test_health_names_an_open_breaker_until_a_manual_run_closes_it(sim, capsys):
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Clinic")
    assert run(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP1")[0] == 0
    sim.inject(Fault("quota_exceeded"))
    assert run_json(capsys, "reconcile", "1", "--now")["verdict"] == "quota_exceeded"
    sim.clear_faults()
    code, out, err = run(capsys, "health", "--skip-halo")
    assert code == 1 and "FAIL breaker" in err and "quota_exceeded breaker open (integrator)" in err
    # When it probes next: read from the breaker, in health and under the tickets it stands for; the
    # ticket's own detail (its webhook's, its JSON's) states the schedule, which stays true.
    from datetime import UTC, datetime

    from worker import wiring

    [state] = wiring.breaker().states()
    due = f"next probe at {datetime.fromtimestamp(state.next_probe_at, UTC):%Y-%m-%d %H:%M:%S} UTC (in "
    assert due in err
    [open_ticket] = run_json(capsys, "tickets", "list")
    assert "the breaker probes Halo 1 min after it opened, then waits twice as long" in open_ticket["detail"]
    code, out, _ = run(capsys, "tickets", "list")
    [line] = [x for x in out.splitlines() if x.startswith("breaker: ")]
    assert code == 0 and "quota_exceeded breaker open (integrator)" in line and due in line
    assert run_json(capsys, "reconcile", "1", "--now")["verdict"] == "unchanged"  # closes it
    report = run_json(capsys, "health", "--skip-halo")
    assert [c["ok"] for c in report["checks"] if c["name"] == "breaker"] == [True]
    [ticket] = run_json(capsys, "tickets", "list", "--status", "resolved")
    assert ticket["reason"] == "quota_exceeded"
    code, out, _ = run(capsys, "tickets", "list", "--status", "resolved")
    assert code == 0 and "breaker:" not in out  # a resolved ticket's breaker is not looked up


def test_practices_add_refuses_an_unpaired_best_practice_site_without_a_code(sim, capsys):
    guid = sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP9", practice_name="Cove Clinic")
    sim.unpair(guid)

    code, out, err = run(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP9")

    assert code == 2 and out == "" and "--pairing-code" in err and err.count("\n") == 1
    assert run_json(capsys, "practices", "list") == []


def test_practices_add_with_a_pairing_code_pairs_and_records_the_site(sim, capsys):
    guid = sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP9", practice_name="Cove Clinic")
    sim.unpair(guid)
    sim.set_pairing_code(guid, "PAIR-42")

    assert run(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP9",
               "--pairing-code", "WRONG")[0] == 1
    practice = run_json(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP9",
                        "--pairing-code", "PAIR-42")

    assert (practice["halo_guid"], practice["availability"]) == (guid, "online")
    assert sim.is_paired(guid) and sim.pairings() == 2


def test_practices_pair_exit_codes(sim, capsys):
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP7", practice_name="Pair Clinic")
    pid = run_json(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP7")["id"]
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP7")
    sim.unpair(new)
    sim.set_pairing_code(new, "GOOD")

    ran = run_json(capsys, "reconcile", str(pid), "--now")
    assert (ran["verdict"], ran["action"]) == ("infrastructure_change", "held")
    [ticket] = run_json(capsys, "tickets", "list")
    assert (ticket["kind"], ticket["reason"]) == ("contact_practice", "pairing_required")

    code, out, err = run(capsys, "practices", "pair", str(pid), "--pairing-code", "BAD")
    assert code == 1 and out == "" and err.strip()
    assert run_json(capsys, "practices", "show", str(pid))["state"] == "held"

    assert run(capsys, "practices", "pair", "999", "--pairing-code", "GOOD")[0] == 2

    practice = run_json(capsys, "practices", "pair", str(pid), "--pairing-code", "GOOD")
    assert (practice["halo_guid"], practice["state"], practice["proposed_guid"]) == (new, "active", None)
    assert run_json(capsys, "tickets", "list") == []
    assert run(capsys, "practices", "pair", str(pid), "--pairing-code", "GOOD")[0] == 2  # nothing held now


def test_approve_exits_1_when_halo_moved_the_proposal(sim, capsys):
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP8", practice_name="Held Clinic")
    pid = run_json(capsys, "practices", "add", "--pms-type", "BestPractice", "--pms-id", "BP8")["id"]
    proposal = sim.change_guid(PmsType.BEST_PRACTICE, "BP8")
    sim.rename(proposal, "Other Owner")
    assert run_json(capsys, "reconcile", str(pid), "--now")["action"] == "held"
    moved = sim.change_guid(PmsType.BEST_PRACTICE, "BP8")

    code, out, err = run(capsys, "approve", str(pid))

    assert code == 1 and out == "" and "did not switch" in err
    practice = run_json(capsys, "practices", "show", str(pid))
    assert (practice["state"], practice["proposed_guid"]) == ("held", moved)

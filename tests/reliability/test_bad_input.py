"""Bad input, generated: a clear refusal, nothing written but a count, and the worker keeps going.

The report hook, GUIDs, the command line, CSV files, oversized messages, and broker messages that
are not ours (unregistered task names, pickle, bodies that do not decode, our task names with
arguments that do not parse) sent to a real worker process.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Connection, Exchange, Producer

from models import PmsType, Practice, Reconciliation, Ticket
from tests.reliability.conftest import count, rows
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers
from reconciler.adapters.coordination import keys
from worker import admin
from worker.cli import main
from reconciler.core.guids import InvalidGuid, parse_guid
from worker.hooks import report_forbidden
from tests.utils.pairing import RecordingSimulator
from worker.simulator import serve

pytestmark = pytest.mark.integration

FIXTURES_OK = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
examples: Counter[str] = Counter()


def tally(observe, name: str, fault: str, how: str, held: str) -> None:
    """One row per generated test; the last example's call wins, so it carries the full count."""
    examples[name] += 1
    observe(fault=fault, how=how, observed=f"{examples[name]} generated examples: {held}")


def is_guid(text: str) -> bool:
    try:
        parse_guid(text)
    except InvalidGuid:
        return False
    return True


@FIXTURES_OK
@given(value=st.one_of(st.text(), st.binary(), st.integers(), st.none(), st.lists(st.text(max_size=3))))
def test_parse_guid_accepts_a_guid_or_raises_invalid_guid_only(observe, value):
    try:
        parsed = parse_guid(value)
    except InvalidGuid as exc:
        assert len(str(exc)) < 120  # names the value, cut short
    else:
        assert parsed == parsed.lower() and len(parsed) == 36
    tally(observe, "guid", "GUIDs that are not GUIDs", "any text, bytes, numbers, None, lists",
          "a canonical GUID or InvalidGuid with a short message, nothing else raised")


@FIXTURES_OK
@given(guid=st.text().filter(lambda t: not is_guid(t)), message=st.one_of(st.none(), st.text(max_size=10_000)))
def test_a_report_with_a_malformed_guid_is_refused_and_only_counted(redis_url, monkeypatch, observe, guid, message):
    monkeypatch.setenv("BROKER_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    outcomes = keys.report_outcomes()
    before = set(client.keys("*")) - {outcomes.encode()}
    counts = client.hgetall(outcomes)

    assert report_forbidden(guid, message) is False

    assert set(client.keys("*")) - {outcomes.encode()} == before
    after = client.hgetall(outcomes)
    assert int(after.pop(b"rejected")) == int(counts.pop(b"rejected", 0)) + 1
    assert after == counts  # no other outcome counted
    tally(observe, "report", "403 reports naming no GUID", "report_forbidden with any non-GUID text and a "
          "message of up to 10,000 characters, real Valkey", "False returned, never raised; no Redis key "
          "changed but the outcome count halo:reports, whose rejected field rose by one each time")


@FIXTURES_OK
@given(argv=st.lists(st.text(min_size=0, max_size=40), min_size=0, max_size=4))
def test_practices_add_with_junk_arguments_exits_2_in_one_line_and_writes_nothing(capsys, observe, argv):
    code = main(["practices", "add", *argv])
    out, err = capsys.readouterr()
    pms_ok = len(argv) == 2 and argv[0].strip() in {t.value for t in PmsType} and argv[1].strip()
    if pms_ok:
        return  # a well-formed request goes to Halo; that is test_cli's business, not this one's
    assert code == 2, err
    assert out == "" and err.strip() and "Traceback" not in err
    assert main(["practices", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    tally(observe, "cli", "junk command-line arguments", "`practices add` with 0-4 arbitrary arguments",
          "exit 2, one line on stderr, no traceback, no practice written")


pms_types = st.sampled_from([t.value for t in PmsType] + ["Best Practice", "", "bestpractice", "Medical Director"])


def test_a_csv_of_junk_rows_is_reported_row_by_row(tmp_path_factory, capsys, monkeypatch, observe):
    # One simulator served for every example (started once: a server per example was most of this
    # test's time); it knows Z1 and nothing else, and no example changes what it knows.
    sim = RecordingSimulator(key="bad-input-key")  # Zedmed onboarding pairs (a shim until the simulator does)
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z1", practice_name="Real Clinic")
    with serve(sim, host="127.0.0.1", port=0) as server:
        monkeypatch.setenv("HALO_BASE_URL", server.url)
        monkeypatch.setenv("HALO_SUBSCRIPTION_KEY", "bad-input-key")
        csv_of_junk_rows(tmp_path_factory, capsys, observe)


@FIXTURES_OK
@given(table=st.lists(st.tuples(pms_types, st.text(max_size=80)), max_size=8))
def csv_of_junk_rows(tmp_path_factory, capsys, observe, table):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["pms_type", "pms_id"])
    writer.writerows(table)
    writer.writerow(["Zedmed", "Z1"])  # one good row after the junk: it must still be onboarded
    # One data directory (the test's own) for every example: Z1 is onboarded by the first and already
    # onboarded for the rest; nothing else Halo knows.
    path = tmp_path_factory.mktemp("csv") / "practices.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    from worker.config import get_settings

    get_settings.cache_clear()
    code = main(["practices", "import", str(path), "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "unexpected" not in err
    how = "`practices import` of up to 8 generated rows (any PMS name, any text as PMS ID) and one good row"
    if code == 2:  # the file as a whole was refused (e.g. a NUL byte): one line, nothing onboarded
        assert out == "" and err.count("\n") == 1
    else:
        summary = json.loads(out)
        assert summary["onboarded"] + summary["already_onboarded"] == 1
        assert code == (1 if summary["failed"] else 0)
    tally(observe, "csv", "CSV rows that are not practices", how, "the good row onboarded and each bad row "
          "reported (exit 1), or the whole file refused in one line (exit 2); never a traceback")


def publish_raw(url: str, body: bytes, content_type: str, headers: dict | None = None) -> None:
    with Connection(url) as conn:
        Producer(conn.default_channel).publish(
            body, exchange=Exchange("reconcile", type="direct"), routing_key="reconcile",
            content_type=content_type, content_encoding="utf-8" if content_type != "application/x-python-serialize" else "binary",
            headers=headers or {})


def test_broker_messages_that_are_not_ours_are_counted_and_dropped(stack, tmp_path, observe):
    from worker.celery_app import app

    sim, env = stack
    sim.add_practice(pms_type=PmsType.BEST_PRACTICE, pms_id="BP1", practice_name="Cove Clinic")
    practice = admin.onboard("BestPractice", "BP1")
    new = sim.change_guid(PmsType.BEST_PRACTICE, "BP1")
    url = env["BROKER_URL"]
    client = redis.Redis.from_url(url)

    [worker] = start_workers(env, tmp_path, count=1, ready=True)
    try:
        foreign = [
            lambda: app.send_task("evil.run_shell", args=["rm -rf /"], queue="reconcile"),
            lambda: app.send_task("halo.reconcile_practice", args=["1; DROP TABLE practice", "forbidden"], queue="reconcile"),
            lambda: app.send_task("halo.reconcile_practice", args=[practice.id, "because"], queue="reconcile"),
            lambda: app.send_task("halo.reconcile_practice", args=[10**30, "forbidden"], queue="reconcile"),
            lambda: app.send_task("halo.reconcile_practice", args=[True, "forbidden"], queue="reconcile"),
            lambda: app.send_task("halo.reconcile_practice", args=[], queue="reconcile"),
            lambda: app.send_task("halo.lookup_forbidden", args=["x" * 1_000_000, None], queue="events"),
            lambda: app.send_task("halo.note_integrator_forbidden", args=["free_lunch", "hi"], queue="events"),
            lambda: app.send_task("halo.sweep", args=[-5], queue="sweep"),
            lambda: publish_raw(url, b"\x80\x04\x95 not really pickle", "application/x-python-serialize"),
            lambda: publish_raw(url, b"{ this is not json", "application/json"),
            lambda: publish_raw(url, json.dumps({"hello": "world"}).encode(), "application/json"),
        ]
        for send in foreign:
            send()
        wait_until(lambda: int(client.get(keys.refused_messages()) or 0) >= len(foreign), timeout=30)

        # The worker is still there, and a real 403 is still handled (with a 1 MB message, cut).
        assert report_forbidden(practice.halo_guid, "Forbidden " + "y" * 1_000_000)
        wait_until(lambda: rows(Practice, Practice.id == practice.id)[0].halo_guid == new, timeout=30)
        assert worker.poll() is None
        refused = int(client.get(keys.refused_messages()))
        assert refused == len(foreign)
        assert count(Reconciliation) == 1 and count(Ticket) == 0
        observe(fault="broker messages that are not ours",
                how=f"{len(foreign)} messages on our queues: an unregistered task, our task names with arguments "
                    "that do not parse (SQL in an id, an unknown trigger, 10**30, a bool, none, a 1 MB GUID, "
                    "an unknown cause, a negative age), pickle, broken JSON, JSON that is not a task",
                observed=f"all {refused} refused and counted (halo:broker:refused), nothing written; the worker "
                         "then handled a real 403 carrying a 1 MB message")
    finally:
        stop_workers([worker])

"""Deliveries you can see (PRODUCT.md, "Nothing is delivered silently late"): real webhook receivers
on loopback (an HTTP server, and a port nothing listens on), the real SQL adapter on PostgreSQL, the
command line as an operator runs it, and the health check and metrics reading the same rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from reconciler.core.errors import CoordinationUnavailable
from sqlmodel import select

from models import TicketKind, TicketReason
from models.outbox import OutboxEvent
from reconciler.adapters.store import SqlStore
from reconciler.adapters import webhook
from reconciler.adapters.metrics import OUTBOX_FAILURES, StateCollector
from tests.integration.conftest import use_environment
from tests.utils import cli
from tests.utils.receivers import http_receiver
from tests.utils.servers import free_port
from worker import db, wiring
from worker.health import check_outbox

pytestmark = pytest.mark.integration

SECRET = "outbox-test-webhook-secret-1b9f"
FIELDS = {"id", "event", "target", "status", "attempts", "last_error", "created_at", "next_attempt_at",
          "delivered_at"}


@pytest.fixture
def down(monkeypatch, tmp_path, postgres_url):
    """A webhook URL on a loopback port nothing listens on, two attempts before an event is failed."""
    use_environment(monkeypatch, {
        "DATABASE_URL": postgres_url,
        "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data"),
        "HALO_RECONCILER_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hooks/halo",
        "HALO_RECONCILER_WEBHOOK_SECRET": SECRET,
        "HALO_RECONCILER_OUTBOX_MAX_ATTEMPTS": "2",
    })
    db.upgrade_schema()
    return monkeypatch


def run(capsys, *argv: str):
    capsys.readouterr()  # what this test's own calls logged is not the command's output
    return cli.run(capsys, *argv)


def run_json(capsys, *argv: str):
    capsys.readouterr()
    return cli.run_json(capsys, *argv)


def _open_ticket(now: datetime | None = None) -> int:
    with db.new_session() as session:
        ticket = SqlStore(session).open_ticket(kind=TicketKind.CONTACT_HALO_SUPPORT,
                                               reason=TicketReason.IP_NOT_ALLOWED, practice_id=None,
                                               detail="Halo says the caller IP is not allowed.", now=now or datetime.now(UTC))
        session.commit()
        return ticket.id


def _due_now() -> None:
    """As if each pending row's backoff had passed."""
    with db.new_session() as session:
        for row in session.exec(select(OutboxEvent)).all():
            row.next_attempt_at = datetime.now(UTC)
            session.add(row)
        session.commit()


def test_an_event_past_its_last_attempt_is_failed_kept_listed_and_sent_again_by_retry(down, capsys, monkeypatch):
    _open_ticket()
    failures_before = OUTBOX_FAILURES.labels(target="webhook")._value.get()

    assert (wiring.deliver_outbox().failed, wiring.deliver_outbox().failed) == (1, 0)  # backed off after one
    [pending] = [row for row in run_json(capsys, "outbox", "list") if row["target"] == "webhook"]
    assert set(pending) == FIELDS
    assert (pending["status"], pending["attempts"], pending["target"], pending["event"]) == (
        "pending", 1, "webhook", "ticket.opened")
    assert "ConnectError" in pending["last_error"] and pending["next_attempt_at"] and pending["delivered_at"] is None

    _due_now()
    assert wiring.deliver_outbox().failed == 1  # the last attempt: failed, and kept
    _due_now()
    assert wiring.deliver_outbox().failed == 0  # a failed event waits for a person, not for the worker
    assert OUTBOX_FAILURES.labels(target="webhook")._value.get() - failures_before == 2

    [failed] = run_json(capsys, "outbox", "list", "--status", "failed")
    assert (failed["id"], failed["status"], failed["attempts"], failed["next_attempt_at"]) == (
        pending["id"], "failed", 2, None)
    assert run_json(capsys, "outbox", "list", "--status", "pending") == []  # no URLs: no notify row written
    assert run_json(capsys, "outbox", "list", "--status", "delivered") == []

    code, out, err = run(capsys, "outbox", "retry", str(failed["id"]))  # the receiver is still down
    assert code == 1 and out == "" and "refused again" in err and "ConnectError" in err
    assert run_json(capsys, "outbox", "list", "--status", "failed")[0]["attempts"] == 3

    code, out, err = run(capsys, "outbox", "retry", "999999")
    assert code == 2 and err.count("\n") == 1 and "no outbox event 999999" in err
    code, out, err = run(capsys, "outbox", "list", "--status", "sideways")
    assert code == 2 and "pending, failed or delivered" in err

    with http_receiver() as receiver:
        use_environment(monkeypatch, {"HALO_RECONCILER_WEBHOOK_URL": f"{receiver.url}/hooks/halo"})
        delivered = run_json(capsys, "outbox", "retry", str(failed["id"]))
        [request] = receiver.on("/hooks/halo")
    assert (delivered["status"], delivered["attempts"], delivered["last_error"]) == ("delivered", 4, None)
    assert request.json()["event"] == "ticket.opened"
    with db.new_session() as session:
        row = session.get(OutboxEvent, failed["id"])
    assert request.headers[webhook.ID_HEADER.lower()] == row.event_id  # the same event, for the receiver's dedup
    assert run_json(capsys, "outbox", "list", "--status", "delivered")[0]["id"] == failed["id"]
    assert run(capsys, "outbox", "retry", str(failed["id"]))[0] == 0  # already delivered: nothing to do


def test_the_list_is_newest_first(down, capsys):
    for _ in range(3):
        ticket_id = _open_ticket()  # opened, then resolved: two events each time
        with db.new_session() as session:
            SqlStore(session).resolve_ticket(ticket_id, now=datetime.now(UTC))
            session.commit()
    ids = [row["id"] for row in run_json(capsys, "outbox", "list")]
    assert len(ids) >= 4 and ids == sorted(ids, reverse=True)
    assert [row["id"] for row in run_json(capsys, "outbox", "list", "--limit", "2")] == ids[:2]


def test_health_names_the_target_and_its_last_error_once_an_event_is_late(down):
    from worker.config import get_settings

    _open_ticket()
    wiring.deliver_outbox()
    settings = get_settings()
    assert settings.outbox_alert_seconds == 900  # the contract's default
    assert check_outbox(settings).ok  # waiting, but not for long

    later = datetime.now(UTC) + timedelta(seconds=901)
    check = check_outbox(settings, now=later)
    assert (check.name, check.ok) == ("outbox", False)
    assert "webhook" in check.detail and "ConnectError" in check.detail and "outbox retry" in check.detail


def test_metrics_show_pending_by_target_and_the_oldest_age(down):
    _open_ticket(now=datetime.now(UTC) - timedelta(minutes=20))
    wiring.deliver_outbox()
    registry = CollectorRegistry()
    def no_redis():
        raise CoordinationUnavailable("not in this test")  # Redis down is a reading of its own; the database's rows stand

    registry.register(StateCollector(redis=no_redis, session=db.new_session, queues=(), sent_at_header="x",
                                     outbox_targets=("webhook",)))
    text = generate_latest(registry).decode()

    assert 'halo_reconciler_outbox_pending{target="webhook"} 1.0' in text
    assert 'target="notify"' not in text  # no notification URLs: its rows wait for nobody
    assert 'halo_reconciler_outbox_failed{target="webhook"} 0.0' in text
    [age] = [line for line in text.splitlines()
             if line.startswith('halo_reconciler_outbox_oldest_pending_age_seconds{target="webhook"}')]
    assert float(age.split()[-1]) >= 20 * 60


def test_retry_of_an_event_a_worker_is_sending_says_so(down, capsys):
    _open_ticket()
    wiring.deliver_outbox()
    [row] = [r for r in run_json(capsys, "outbox", "list") if r["target"] == "webhook"]
    with db.new_session() as worker:  # a worker's drain holds the row (FOR UPDATE) while it sends
        worker.exec(select(OutboxEvent).where(OutboxEvent.id == row["id"]).with_for_update()).one()
        code, out, err = run(capsys, "outbox", "retry", str(row["id"]))
        worker.rollback()
    assert code == 1 and "being sent by a worker" in err
    assert [r["attempts"] for r in run_json(capsys, "outbox", "list", "--status", "pending")
            if r["id"] == row["id"]] == [1]  # untouched


def test_health_exits_1_naming_the_late_target(down, capsys, redis_url, monkeypatch):
    use_environment(monkeypatch, {"BROKER_URL": redis_url})
    _open_ticket(now=datetime.now(UTC) - timedelta(minutes=20))
    wiring.deliver_outbox()

    code, out, err = run(capsys, "health", "--skip-halo")

    assert code == 1 and "ok   database" in out
    said = " ".join(err.split())  # the terminal printer may fold a long line
    assert "FAIL outbox: webhook: 1 event(s) undelivered" in said and "ConnectError" in said
    assert "notify" not in said  # no notification URLs: its rows wait for nobody, not late
    report = json.loads(run(capsys, "health", "--skip-halo", "--json")[1])
    assert [c["ok"] for c in report["checks"] if c["name"] == "outbox"] == [False]


def _notify_rows_of_an_older_version() -> None:
    """Notify rows as an older version wrote them with no URL configured (one per status), beside a webhook row."""
    now = datetime.now(UTC)
    with db.new_session() as session:
        for n, status in enumerate(("pending", "failed", "delivered")):
            session.add(OutboxEvent(event_id=f"notify-ticket-9{n}-opened-1", event_type="ticket.opened",
                                    target="notify", status=status, payload={"event": "ticket.opened"},
                                    created_at=now, next_attempt_at=now,
                                    delivered_at=now if status == "delivered" else None))
        session.add(OutboxEvent(event_id="ticket-90-opened-1", event_type="ticket.opened", target="webhook",
                                payload={"event": "ticket.opened"}, created_at=now, next_attempt_at=now))
        session.commit()


def _targets_and_statuses() -> list[tuple[str, str]]:
    with db.new_session() as session:
        return sorted((str(r.target), str(r.status)) for r in session.exec(select(OutboxEvent)).all())


def test_notify_rows_nobody_can_deliver_are_shown_as_such_and_dropped_by_retention(down, capsys):
    from tasks.retention import apply_retention_task

    _notify_rows_of_an_older_version()
    code, out, _ = run(capsys, "outbox", "list")
    said = " ".join(out.split())
    assert code == 0 and "2 undelivered notify event(s) wait for nobody" in said
    assert "the next retention pass drops them" in said

    planned = run_json(capsys, "retention", "run", "--dry-run")
    assert (planned["dry_run"], planned["outbox_dropped"]) == (True, 2)
    assert len(_targets_and_statuses()) == 4  # a dry run changes nothing

    assert run_json(capsys, "retention", "run")["outbox_dropped"] == 2
    # The webhook's row waits for its receiver; what was delivered is history, kept.
    assert _targets_and_statuses() == [("notify", "delivered"), ("webhook", "pending")]
    assert run_json(capsys, "retention", "run")["outbox_dropped"] == 0

    with db.new_session() as session:
        session.add(OutboxEvent(event_id="notify-ticket-99-opened-1", event_type="ticket.opened", target="notify",
                                payload={}, created_at=datetime.now(UTC), next_attempt_at=datetime.now(UTC)))
        session.commit()
    apply_retention_task()  # the beat's pass drops them the same way
    assert _targets_and_statuses() == [("notify", "delivered"), ("webhook", "pending")]


def test_with_a_notification_url_retention_drops_no_notify_row(down, capsys, monkeypatch):
    _notify_rows_of_an_older_version()
    use_environment(monkeypatch, {"HALO_RECONCILER_NOTIFY_URLS": f"json://127.0.0.1:{free_port()}/hooks/notify"})

    assert run_json(capsys, "retention", "run")["outbox_dropped"] == 0
    assert len(_targets_and_statuses()) == 4  # they have a receiver now: delivered (or failed), never dropped
    _open_ticket()
    assert [r["target"] for r in run_json(capsys, "outbox", "list", "--status", "pending")][:2] == ["notify", "webhook"]

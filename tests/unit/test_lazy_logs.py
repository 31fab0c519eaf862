"""reconciler.logs: structlog's logger, imported on the first line; a deferred configuration runs
once, just before that line, and a configuration done now replaces it."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from reconciler import logs
from worker.config import get_settings
from worker.logging import configure_logging


def test_a_lazy_logger_writes_structlogs_events():
    log = logs.get_logger()

    with capture_logs() as captured:
        log.info("ticket_opened", ticket_id=7)
        log.bind(practice_id=3).warning("guid_switched")

    assert [(e["event"], e["log_level"]) for e in captured] == [("ticket_opened", "info"), ("guid_switched", "warning")]
    assert captured[0]["ticket_id"] == 7 and captured[1]["practice_id"] == 3


def test_it_follows_a_configuration_made_after_it_was_created():
    log = logs.get_logger()
    log.info("first_line")  # resolved to structlog's proxy before the configuration below

    with capture_logs() as captured:
        log.info("second_line")

    assert [e["event"] for e in captured] == ["second_line"]


def test_a_deferred_configuration_runs_once_before_the_first_line():
    calls = []
    logs.configure_on_first_use(lambda: calls.append(structlog.is_configured()))
    log = logs.get_logger()
    assert calls == []

    with capture_logs() as captured:
        log.info("command_failed")
        log.info("command_failed")

    assert len(calls) == 1 and len(captured) == 2


def test_a_configuration_done_now_replaces_a_deferred_one():
    calls = []
    logs.configure_on_first_use(lambda: calls.append("deferred"))
    configure_logging(get_settings())

    with capture_logs():
        logs.get_logger().info("sweep_finished")

    assert calls == []


def test_contextvars_reach_the_lines():
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as captured:
        logs.bind_contextvars(verdict="unchanged")
        logs.get_logger().info("reconcile_finished")
        logs.unbind_contextvars("verdict")
        logs.get_logger().info("reconcile_finished")

    assert [e.get("verdict") for e in captured] == ["unchanged", None]

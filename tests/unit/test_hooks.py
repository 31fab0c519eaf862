"""The application hook's promises: never raises, refuses bad GUIDs, bounded when the store is down."""

from __future__ import annotations

import logging

import time

import fakeredis
import httpx
import pytest
from structlog.testing import capture_logs

from reconciler.adapters.coordination import keys
from reconciler.core.vocabulary import ReportOutcome
from tests.utils.fakes import patch_get_redis
from worker import hooks
from worker.hooks import MAX_MESSAGE_BYTES, cut_message, guid_from_url, report_forbidden

GUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def test_malformed_guids_are_refused_without_raising_and_counted(monkeypatch):
    store = fakeredis.FakeRedis()
    patch_get_redis(monkeypatch, lambda **_: store)
    bad_guids = ["", "nope", "3f2504e0-4f89", None, 42, "x" * 10_000]
    for bad in bad_guids:
        assert report_forbidden(bad) is False
    assert int(store.hget(keys.report_outcomes(), "rejected")) == len(bad_guids)


def test_messages_are_cut_to_4_kib_on_a_character_boundary():
    cut = cut_message("é" * 5000)
    assert len(cut.encode()) <= MAX_MESSAGE_BYTES and set(cut) == {"é"}
    assert cut_message("short") == "short" and cut_message(None) is None


def test_a_store_that_is_down_makes_the_hook_return_false_quickly(monkeypatch):
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("HALO_RECONCILER_REPORT_TIMEOUT_SECONDS", "0.2")
    assert report_forbidden(GUID, "Forbidden") is False  # the first call also pays for imports
    started = time.monotonic()
    assert report_forbidden(GUID, "Forbidden") is False
    assert time.monotonic() - started < 1.0  # generous: the configured bound is 0.2 s


def test_guid_from_halo_urls():
    assert guid_from_url(httpx.URL(f"https://api.haloconnect.io/integrator/sites/{GUID.upper()}/queries/immediate")) == GUID
    assert guid_from_url(httpx.URL(f"https://api.haloconnect.io/integrator/sites/{GUID}")) == GUID
    assert guid_from_url(httpx.URL("https://api.haloconnect.io/integrator/sites")) is None


def test_the_httpx_hook_reports_403s_from_halo_only(monkeypatch):
    seen = []
    monkeypatch.setattr(hooks, "report_forbidden", lambda guid, message=None, **ctx: seen.append((guid, message)))

    def handler(request):
        return httpx.Response(403, json={"error": {"status": 403, "statusText": "Forbidden", "message": "nope"}})

    transport = httpx.MockTransport(handler)
    with httpx.Client(transport=transport, event_hooks={"response": [hooks.forbidden_event_hook]}) as client:
        client.post(f"https://api.haloconnect.io/integrator/sites/{GUID}/queries/immediate")
        client.get(f"https://example.com/integrator/sites/{GUID}")
    assert seen == [(GUID, "nope")]


def test_the_async_httpx_hook(monkeypatch):
    import asyncio

    seen = []
    monkeypatch.setattr(hooks, "report_forbidden", lambda guid, message=None, **ctx: seen.append(guid))

    async def run():
        transport = httpx.MockTransport(lambda request: httpx.Response(403, text="Forbidden"))
        async with httpx.AsyncClient(transport=transport,
                                     event_hooks={"response": [hooks.async_forbidden_event_hook]}) as client:
            await client.get(f"https://api.stage.haloconnect.io/integrator/sites/{GUID}")

    asyncio.run(run())
    assert seen == [GUID]


def _stub_reporter(outcome: str):
    """The hook's reporter, autospec'd, answering ``outcome`` (the hook's own path runs for real)."""
    from unittest import mock

    from reconciler.adapters.coordination.reporter import Reporter

    fake = mock.create_autospec(Reporter, instance=True)
    fake.report.return_value = outcome
    hooks._reporter.put(fake)
    return fake


@pytest.mark.parametrize("outcome", ["folded", "counted", "stale", "unknown"])
def test_a_report_that_sends_nothing_logs_nothing(outcome, caplog):
    fake = _stub_reporter(ReportOutcome(outcome))
    caplog.set_level(logging.DEBUG, logger="halo_reconciler.hooks")
    hooks.log.disabled = False  # an earlier fileConfig (Alembic's, in another test) disables existing loggers
    try:
        with capture_logs() as logs:
            assert report_forbidden(GUID.upper(), "Forbidden") is True
        assert logs == [] and caplog.records == []
        fake.report.assert_called_once_with(GUID, "Forbidden")
    finally:
        hooks.reset()


@pytest.mark.parametrize("outcome", ["publish", "recheck", "persists", "lookup"])
def test_a_report_that_sent_a_task_is_logged_once(outcome, caplog):
    _stub_reporter(ReportOutcome(outcome))
    caplog.set_level(logging.DEBUG, logger="halo_reconciler.hooks")
    hooks.log.disabled = False  # an earlier fileConfig (Alembic's, in another test) disables existing loggers
    try:
        assert report_forbidden(GUID, "Forbidden") is True
        # The standard library's logger (a library in the application's process), one line, at DEBUG.
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
            (logging.DEBUG, f"forbidden_reported guid={GUID} outcome={outcome}")]
    finally:
        hooks.reset()

"""A real worker's metrics endpoint, scraped after real work, passes ``promtool check metrics``, and
carries every metric the alert rules and the dashboard name (deploy/prometheus/)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from models import PmsType
from tests.utils import promtool
from tests.utils.servers import free_port
from tests.utils.waiting import wait_until
from tests.utils.workers import start_workers, stop_workers
from worker import admin
from worker.hooks import report_forbidden

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # promtool may be installed first

HERE = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_a_real_scrape_passes_promtool_and_has_what_the_rules_watch(stack, tmp_path):
    sim, env = stack
    port = free_port()
    env = {**env, "HALO_RECONCILER_METRICS_PORT": str(port)}
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z1", practice_name="Scraped Clinic")
    practice = admin.onboard("Zedmed", "Z1")
    sim.rename(practice.halo_guid, "New Owners Clinic")  # the worker's run: business_change, held, a ticket

    workers = start_workers(env, tmp_path, count=1, ready=True)
    try:
        scrape = f"http://127.0.0.1:{port}/metrics"
        assert report_forbidden(practice.halo_guid, "Forbidden")
        admin.enqueue_sweep(older_than_seconds=3600)
        text = ""

        def complete() -> bool:
            nonlocal text
            text = httpx.get(scrape, timeout=10).text
            return {"halo_reconciler_reconciliations_total", "halo_reconciler_tickets_opened_total",
                    "halo_reconciler_last_sweep_age_seconds"} <= _names(text)

        wait_until(complete, timeout=60, interval=0.3, what="a reconciliation and a sweep in the scrape",
                   ignoring=(httpx.HTTPError,))
    finally:
        stop_workers(workers)

    checked = promtool.run("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    scraped = _names(text)
    watched = set(re.findall(r"halo_reconciler_\w+", (HERE / "alerts.yml").read_text()))
    charted = set(re.findall(r"halo_reconciler_\w+", (HERE / "dashboard.json").read_text()))
    assert (watched | charted) - scraped == set(), "named by the rules or the dashboard, absent from a real scrape"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [business] = [s for s in families["halo_reconciler_ticket_oldest_open_age_seconds"].samples
                  if s.labels == {"kind": "contact_practice", "reason": "business_change"}]
    assert 0 <= business.value < 3600
    held = [s for s in families["halo_reconciler_practices"].samples if s.labels == {"state": "held"}]
    assert [s.value for s in held] == [1.0]

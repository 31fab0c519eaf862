"""The Procfile as an operator runs it (honcho), against real Valkey and PostgreSQL: a GUID change
reported through the hook is switched by the worker, and the metrics endpoint counts it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import use_environment
from tests.utils.servers import free_port
from tests.utils.waiting import wait_until
from worker import admin, db
from worker.hooks import report_forbidden
from worker.processes import start_in_new_group, stop_process_group
from worker.simulator.control import SimulatorControl

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "procfile-e2e-key-0c4f"


NOT_UP_YET = (httpx.HTTPError, OSError)  # an endpoint still starting refuses or resets connections


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_procfile_switches_a_reported_guid_change_and_counts_it(monkeypatch, tmp_path, redis_url, postgres_url):
    sim_port, metrics_port, api_port = free_port(), free_port(), free_port()
    env = {
        "HALO_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "HALO_SUBSCRIPTION_KEY": KEY,
        "HALO_SIMULATOR_PORT": str(sim_port),
        "HALO_SIMULATOR_KEY": KEY,
        "HALO_RECONCILER_METRICS_PORT": str(metrics_port),
        "HALO_RECONCILER_API_PORT": str(api_port),
        "BROKER_URL": redis_url,
        "DATABASE_URL": postgres_url,
        "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data"),
        "HALO_RECONCILER_LOG_FORMAT": "json",
    }
    use_environment(monkeypatch, env)
    db.upgrade_schema()  # the release step (`halo-reconciler db upgrade`) runs before the Procfile

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    log = open(tmp_path / "honcho.log", "wb")
    honcho = start_in_new_group([sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT)],
                                env={**os.environ, **env, "PATH": path}, stdout=log, stderr=subprocess.STDOUT)
    try:
        control = SimulatorControl(env["HALO_BASE_URL"])
        scrape = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until(lambda: httpx.get(f"{env['HALO_BASE_URL']}/_sim/calls", headers={"Ocp-Apim-Subscription-Key": KEY}).status_code == 200,
                   timeout=60, interval=0.2, what="the simulator", ignoring=NOT_UP_YET)
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{api_port}/healthz").status_code == 200,
                   timeout=60, interval=0.2, what="the HTTP API", ignoring=NOT_UP_YET)
        wait_until(lambda: httpx.get(scrape).status_code == 200,
                   timeout=60, interval=0.2, what="the metrics endpoint", ignoring=NOT_UP_YET)

        control.add_practice(pms_type="BestPractice", pms_id="BP42", practice_name="Procfile Clinic")
        practice = admin.onboard("BestPractice", "BP42")
        new = control.change_guid("BestPractice", "BP42")
        assert report_forbidden(practice.halo_guid, "Forbidden")

        wait_until(lambda: admin.practice(practice.id).halo_guid == new,
                   timeout=60, interval=0.2, what="the switch")
        text = ""

        def counted() -> bool:
            nonlocal text
            text = httpx.get(scrape).text
            return metric(text, "halo_reconciler_reconciliations_total",
                          verdict="infrastructure_change", action="switched") == 1

        wait_until(counted, timeout=20, interval=0.2, what="the reconciliation in the metrics", ignoring=NOT_UP_YET)
        assert metric(text, "halo_reconciler_halo_calls_total", endpoint="find_sites", status="200") >= 1
        assert metric(text, "halo_reconciler_halo_call_seconds_count", endpoint="find_sites") >= 1
        assert metric(text, "halo_reconciler_reports_total", outcome="publish") == 1
        assert metric(text, "halo_reconciler_redis_up") == 1 and metric(text, "halo_reconciler_database_up") == 1
        assert metric(text, "halo_reconciler_queue_depth", queue="reconcile") == 0
        assert metric(text, "halo_reconciler_practices", state="active") == 1
        assert control.call_count("find_sites") >= 2  # onboarding's call and the reconciliation's
    finally:
        stop_process_group(honcho, timeout=20)

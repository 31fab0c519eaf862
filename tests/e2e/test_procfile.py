"""The Procfile as an operator runs it (honcho), against real Valkey and PostgreSQL: a GUID change
reported through the hook is switched by the worker, and the metrics endpoint counts it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import stop_workers, use_environment
from tests.utils.servers import free_port
from worker import admin, db
from worker.hooks import report_forbidden
from worker.simulator.control import SimulatorControl

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "procfile-e2e-key-0c4f"


def wait_for(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        sample, _, rest = series.partition("{")
        have = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sample == name and have == wanted:
            return float(value)
    return 0.0


def test_procfile_switches_a_reported_guid_change_and_counts_it(monkeypatch, tmp_path, redis_url, postgres_url):
    sim_port, metrics_port = free_port(), free_port()
    env = {
        "HALO_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "HALO_SUBSCRIPTION_KEY": KEY,
        "HALO_SIMULATOR_PORT": str(sim_port),
        "HALO_SIMULATOR_KEY": KEY,
        "HALO_RECONCILER_METRICS_PORT": str(metrics_port),
        "BROKER_URL": redis_url,
        "DATABASE_URL": postgres_url,
        "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data"),
        "HALO_RECONCILER_LOG_FORMAT": "json",
    }
    use_environment(monkeypatch, env)
    db.upgrade_schema()  # the release step (`halo-reconciler db upgrade`) runs before the Procfile

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    log = open(tmp_path / "honcho.log", "wb")
    honcho = subprocess.Popen([sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT)],
                              env={**os.environ, **env, "PATH": path}, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        control = SimulatorControl(env["HALO_BASE_URL"])
        scrape = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_for(lambda: httpx.get(f"{env['HALO_BASE_URL']}/_sim/calls", headers={"Ocp-Apim-Subscription-Key": KEY}).status_code == 200,
                 what="the simulator")
        wait_for(lambda: httpx.get(scrape).status_code == 200, what="the metrics endpoint")

        control.add_practice(pms_type="BestPractice", pms_id="BP42", practice_name="Procfile Clinic")
        practice = admin.onboard("BestPractice", "BP42")
        new = control.change_guid("BestPractice", "BP42")
        assert report_forbidden(practice.halo_guid, "Forbidden")

        wait_for(lambda: admin.practice(practice.id).halo_guid == new, what="the switch")
        text = ""

        def counted() -> bool:
            nonlocal text
            text = httpx.get(scrape).text
            return metric(text, "halo_reconciler_reconciliations_total",
                          verdict="infrastructure_change", action="switched") == 1

        wait_for(counted, timeout=20, what="the reconciliation in the metrics")
        assert metric(text, "halo_reconciler_halo_calls_total", endpoint="find_sites", status="200") >= 1
        assert metric(text, "halo_reconciler_halo_call_seconds_count", endpoint="find_sites") >= 1
        assert metric(text, "halo_reconciler_reports_total", outcome="publish") == 1
        assert metric(text, "halo_reconciler_redis_up") == 1 and metric(text, "halo_reconciler_database_up") == 1
        assert metric(text, "halo_reconciler_queue_depth", queue="reconcile") == 0
        assert metric(text, "halo_reconciler_practices", state="active") == 1
        assert control.call_count("find_sites") >= 2  # onboarding's call and the reconciliation's
    finally:
        stop_workers([honcho])  # SIGTERM to its process group, SIGKILL after 20 s

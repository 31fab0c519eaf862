"""The alerting rules (worker/prometheus/alerts.yml, package data; deploy/prometheus/alerts.yml links to
it), their promtool unit tests and the Grafana dashboard beside them (deploy/prometheus/). That the metrics they name exist on a real worker: tests/integration/test_prometheus.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from tests.utils import promtool

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deploy" / "prometheus"

pytestmark = pytest.mark.timeout(900)  # the first promtool call may install it with apt-get


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((HERE / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules():
    done = promtool.run("check", "rules", str(HERE / "alerts.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass():
    done = promtool.run("test", "rules", str(HERE / "alerts_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_checks_the_example_config():
    done = promtool.run("check", "config", str(HERE / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_that_sees_it_fire_and_one_that_sees_it_quiet():
    tests = yaml.safe_load((HERE / "alerts_test.yml").read_text())["tests"]
    fired, quiet = set(), set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names - fired == set(), "alerts no test sees firing"
    assert names - quiet == set(), "alerts no test sees quiet before they fire"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in markdown.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_alert_explains_itself_and_points_at_its_runbook_section(rule):
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    assert rule["labels"]["severity"] in {"warning", "critical"}
    page, _, anchor = annotations["runbook_url"].partition("#")
    assert page == "docs/RUNBOOK.md"
    assert anchor in _anchors((ROOT / page).read_text()), f"docs/RUNBOOK.md has no section #{anchor}"


def test_the_dashboard_is_grafana_json_over_the_workers_metrics():
    dashboard = json.loads((HERE / "dashboard.json").read_text())
    assert dashboard["uid"] == "halo-reconciler" and dashboard["panels"]
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert all('job=~"$job"' in expr for expr in exprs)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    named = set(re.findall(r"halo_reconciler_\w+", " ".join(exprs)))
    alerted = set(re.findall(r"halo_reconciler_\w+", (HERE / "alerts.yml").read_text()))
    assert alerted <= named, "every metric an alert watches is on the dashboard"


def test_the_rendered_rules_have_absolute_runbook_urls_and_pass_promtool(tmp_path, capsys):
    import subprocess

    from tests.utils.promtool import promtool
    from worker.cli import main

    base = "https://git.example.test/ops/halo-reconciler/blob/main/docs/RUNBOOK.md"
    assert main(["alert-rules", "--runbook-url", base]) == 0
    rendered = capsys.readouterr().out
    urls = [rule["annotations"]["runbook_url"] for group in yaml.safe_load(rendered)["groups"] for rule in group["rules"]]
    assert urls and all(url.startswith(base + "#") for url in urls)
    assert [url.split("#")[1] for url in urls] == [rule["annotations"]["runbook_url"].split("#")[1] for rule in rules()]
    (tmp_path / "alerts.yml").write_text(rendered)
    done = subprocess.run([promtool(), "check", "rules", str(tmp_path / "alerts.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert main(["alert-rules"]) == 2 and "--runbook-url" in capsys.readouterr().err


def test_deploy_prometheus_alerts_is_the_package_data_itself():
    """One file: the repository's deploy/prometheus/alerts.yml is a link to what the wheel ships."""
    link = HERE / "alerts.yml"
    assert link.is_symlink() and link.resolve() == (ROOT / "worker" / "prometheus" / "alerts.yml").resolve()


def test_alert_rules_work_from_a_built_wheel_outside_the_checkout(tmp_path):
    """Built as deploy/Dockerfile builds it (only the packages and pyproject.toml: no deploy/ beside
    it), unpacked away from the checkout, and run there: promtool checks what it prints."""
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("worker", "tasks", "models", "reconciler", "halo_reconciler"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--wheel-dir", str(tmp_path / "wheels"), str(src)], capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp_path / "wheels").glob("halo_reconciler-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("worker/prometheus/alerts.yml").decode()
        archive.extractall(tmp_path / "site")
    assert shipped == (ROOT / "worker" / "prometheus" / "alerts.yml").read_text()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    base = "https://runbooks.example.test/halo/RUNBOOK.md"
    probe = ("import sys, worker; from worker.cli import main; print(worker.__file__, file=sys.stderr); "
             f"sys.exit(main(['alert-rules', '--runbook-url', {base!r}]))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == str(tmp_path / "site" / "worker" / "__init__.py")  # not the checkout
    urls = [rule["annotations"]["runbook_url"] for group in yaml.safe_load(done.stdout)["groups"]
            for rule in group["rules"]]
    assert len(urls) == len(rules()) and all(url.startswith(base + "#") for url in urls)
    (elsewhere / "alerts.yml").write_text(done.stdout)
    checked = promtool.run("check", "rules", str(elsewhere / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout

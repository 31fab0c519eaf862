"""The deployment files' commands run for real: the worker unit's shell line and systemd-analyze.

They start processes, so they live here rather than beside the rest of tests/unit/test_deploy.py.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_deploy import EXE, UNITS, systemd_unescape, unit_environment, units  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def test_worker_instances_get_their_own_name_and_metrics_port(units, tmp_path):
    unit = units["worker"]
    assert "%i" in unit["Service"]["ExecStart"]
    tokens = shlex.split(unit["Service"]["ExecStart"])
    if tokens[:2] != ["/bin/sh", "-c"]:
        pytest.skip("ExecStart runs the worker directly")
    if not Path("/bin/sh").exists():
        pytest.skip("no /bin/sh here")
    # Run the unit's shell line for instance 2, with a stand-in executable that prints what it got.
    fake = tmp_path / "halo-reconciler"
    fake.write_text('#!/bin/sh\necho "$HALO_RECONCILER_METRICS_PORT $*"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    script = systemd_unescape(tokens[2], instance="2").replace(EXE, str(fake))
    base = unit_environment(unit)["HALO_RECONCILER_METRICS_PORT"]
    env = {"PATH": os.environ.get("PATH", ""), "HALO_RECONCILER_METRICS_PORT": base}
    run = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=10, check=True)
    out = run.stdout.split()
    assert out[0] == str(int(base) + 2)
    assert out[1:] == ["worker", "--hostname=worker2@testhost"]


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze is not installed here")
    for path in UNITS.values():
        shutil.copy(path, tmp_path / path.name)
    # A template is verified through an instance; systemd finds the template beside it.
    names = [p.name.replace("@.service", "@1.service") for p in UNITS.values()]
    result = subprocess.run([tool, "verify", "--man=no", *(str(tmp_path / n) for n in names)],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    # verify exits 0 on unknown keys and bad values (it only warns), so its output is the verdict.
    # The venv is not installed here: its "not executable" complaint is the one line expected.
    output = (result.stdout + result.stderr).splitlines()
    missing_exe = [line for line in output if EXE in line and "is not executable" in line]
    problems = [line for line in output if "halo-reconciler" in line and line not in missing_exe]
    assert not problems, "\n".join(problems)
    if result.returncode != 0:
        assert missing_exe, f"systemd-analyze verify failed: {output}"

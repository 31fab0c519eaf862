"""promtool, from Debian's ``prometheus`` package: found on PATH, installed with apt-get where it is
missing and we may (root, apt-get present), or the test is skipped saying why."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_tried: list[str] = []


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if not _tried:
        _tried.append(_install())
    found = shutil.which("promtool")
    if not found:
        pytest.skip(f"promtool is not installed and could not be: {_tried[0]} (apt-get install -y prometheus)")
    return found


def _install() -> str:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root, or no apt-get"
    # No service is started: a container has no init, and a host's policy-rc.d decides as always.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
                    ["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(command)}: {exc}"
        if command[1] == "install" and done.returncode == 0 and shutil.which("promtool"):
            return "installed"
    return f"apt-get install prometheus failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], input=stdin, capture_output=True, text=True, timeout=120)

"""schemathesis (``--checks all``) against the served ``/v1/openapi.json``: the document and the server
agree, for schema-valid and schema-invalid requests, undeclared methods and missing tokens alike.

A real ``serve`` and a real worker over Valkey and PostgreSQL (the worker answers the lookups the
generated reports cause, as in production); a fixed seed, so a failure replays.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils.serving import running_serve
from tests.utils.workers import start_workers, stop_workers

pytestmark = pytest.mark.integration

TOKEN = "schemathesis-token-5a7e21"
SEED = "20261204"


def test_schemathesis_finds_nothing(stack, tmp_path):
    _, env = stack
    workers = start_workers(env, tmp_path, count=1, concurrency=2, ready=True)
    try:
        with running_serve(env, tmp_path / "serve.log", TOKEN) as (url, _):
            done = subprocess.run(
                [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/v1/openapi.json",
                 "--url", url, "--checks", "all", "--header", f"Authorization: Bearer {TOKEN}",
                 "--max-examples", "30", "--seed", SEED, "--request-timeout", "30", "--wait-for-schema", "30",
                 "--no-color"],
                cwd=tmp_path, capture_output=True, text=True, timeout=540)  # its .schemathesis cache there
    finally:
        stop_workers(workers)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "failed" not in done.stdout.split("SUMMARY")[-1].lower(), done.stdout[-4000:]

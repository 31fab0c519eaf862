"""The Python hook inside an application laid out the ordinary way, as a real process.

The application's directory has its own ``models.py``, ``tasks.py`` and ``worker.py`` (Flask's and
Celery's usual names); Python finds them first. The hook must import none of the worker's ``models``
or ``tasks``, must not pick up the application's files for its own packages, and must leave the
application's ``worker`` module its name. And it writes nothing to the application's stdout, and
never the broker's password anywhere, even with the broker silent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.integration

UNKNOWN = ("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222")
PASSWORD = "BROKERPW123"


def application(tmp_path: Path, main: str, *, own_worker: bool) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "models.py").write_text('raise RuntimeError("the hook imported the application\'s models.py")\n')
    (app / "tasks.py").write_text('raise RuntimeError("the hook imported the application\'s tasks.py")\n')
    if own_worker:
        (app / "worker.py").write_text('WHO = "the application"\n')
    (app / "main.py").write_text(textwrap.dedent(main))
    return app


def run(app: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HALO_", "BROKER_", "DATABASE_"))}
    return subprocess.run([sys.executable, "main.py"], cwd=app, env={**clean, **env}, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def env(redis_url, tmp_path) -> dict[str, str]:
    return {"BROKER_URL": redis_url, "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data")}


def test_beside_its_own_models_and_tasks_the_usual_import_works(env, redis_url, tmp_path):
    app = application(tmp_path, f"""
        import json, sys
        from worker.hooks import report_forbidden
        taken = report_forbidden({UNKNOWN[0]!r}, "Forbidden")
        print(json.dumps({{"taken": taken, "models": "models" in sys.modules, "tasks": "tasks" in sys.modules}}))
    """, own_worker=False)
    done = run(app, env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"taken": True, "models": False, "tasks": False}
    assert redis.Redis.from_url(redis_url).llen("events") == 1  # the lookup was published


def test_beside_its_own_worker_py_the_hook_comes_by_its_own_name(env, redis_url, tmp_path):
    app = application(tmp_path, f"""
        import json, sys
        import worker as mine
        from halo_reconciler.hooks import report_forbidden
        first = report_forbidden({UNKNOWN[0]!r}, "Forbidden")
        second = report_forbidden({UNKNOWN[1]!r}, "Forbidden")  # a second publish, names given back
        import worker
        print(json.dumps({{"taken": [first, second], "worker": worker.WHO, "same": sys.modules["worker"] is mine,
                           "models": "models" in sys.modules, "tasks": "tasks" in sys.modules}}))
    """, own_worker=True)
    done = run(app, env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"taken": [True, True], "worker": "the application", "same": True,
                                       "models": False, "tasks": False}
    assert redis.Redis.from_url(redis_url).llen("events") == 2


def test_the_application_imports_its_own_worker_after_the_hook(env, tmp_path):
    app = application(tmp_path, f"""
        from halo_reconciler.hooks import report_forbidden
        import worker
        assert worker.WHO == "the application", worker
        assert report_forbidden({UNKNOWN[0]!r}) is True
        print("ok")
    """, own_worker=True)
    done = run(app, env)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


@pytest.mark.parametrize("configured", [False, True], ids=["no_logging_config", "debug_logging"])
def test_a_silent_broker_writes_nothing_to_stdout_and_never_the_password(tmp_path, configured):
    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        app = application(tmp_path, f"""
            import logging, sys
            if {configured}:
                logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
            from worker.hooks import report_forbidden
            bad = report_forbidden("not-a-guid")
            good = report_forbidden({UNKNOWN[0]!r}, "Forbidden")
            sys.stderr.write(f"RESULT {{bad}} {{good}}\\n")
        """, own_worker=False)
        done = run(app, {"BROKER_URL": f"redis://default:{PASSWORD}@127.0.0.1:{port}/0",
                         "HALO_RECONCILER_DATA_DIR": str(tmp_path / "data"),
                         "HALO_RECONCILER_REPORT_TIMEOUT_SECONDS": "0.3"})
    finally:
        silent.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # a library writes nothing to its host's stdout
    assert "RESULT False False" in done.stderr
    assert PASSWORD not in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr) < 2000, done.stderr
    if configured:  # the lines are there, for an application that asks for them
        assert "forbidden_rejected" in done.stderr and "forbidden_report_failed" in done.stderr, done.stderr

"""The command line's start-up: what an operator waits for before ``halo-reconciler`` answers.

Each command runs as a fresh process, as an operator runs it, ``RUNS`` times, the commands taking
turns so that the machine's noise falls on all of them alike; ``python3 -c pass`` (the interpreter
alone) and ``python3 -c "import worker.cli"`` (the module alone) are rows of the same run. The
listing reads an embedded default data directory seeded with a few practices through the real
``practices add`` against the simulator on loopback.

Every process gets the environment an operator has: bytecode caches are written (the sandbox's
``PYTHONDONTWRITEBYTECODE`` is dropped, and one untimed run per command warms them and the page
cache), so the figures are start-ups, not compilations.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 15
QUICK_RUNS = 7
PRACTICES = 5
KEY = "bench-cli-key-5f1e"
TARGETS_MS = {"--help": 300.0, "practices list --json": 500.0}


def _cli() -> list[str]:
    """The installed entry point (what an operator types), else the module."""
    script = Path(sys.executable).with_name("halo-reconciler")
    return [str(script)] if script.exists() else [sys.executable, "-m", "worker.cli"]


def _commands() -> dict[str, list[str]]:
    cli = _cli()
    return {
        "python3 -c pass": [sys.executable, "-c", "pass"],
        'python3 -c "import worker.cli"': [sys.executable, "-c", "import worker.cli"],
        "--help": [*cli, "--help"],
        "practices list --json": [*cli, "practices", "list", "--json"],
        "practices list": [*cli, "practices", "list"],
        "tickets list --json": [*cli, "tickets", "list", "--json"],
        "db current --json": [*cli, "db", "current", "--json"],
    }


def _environment(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "DATABASE_URL", "BROKER_URL") and not k.startswith("HALO_")}
    env.update({"HALO_RECONCILER_DATA_DIR": str(data), "HALO_RECONCILER_LOG_LEVEL": "WARNING",
                "HALO_RECONCILER_LOG_FORMAT": "json", "COLUMNS": "120"})
    return env


def _seed(env: dict[str, str]) -> None:
    """``PRACTICES`` practices onboarded by the real command against the simulator."""
    from models import PmsType
    from worker.simulator import Simulator, serve

    sim = Simulator(key=KEY)
    with serve(sim) as server:
        seeded = {**env, "HALO_BASE_URL": server.url, "HALO_SUBSCRIPTION_KEY": KEY}
        for n in range(PRACTICES):
            sim.add_practice(pms_type=PmsType.ZEDMED, pms_id=f"Z{n:03d}", practice_name=f"Bench Clinic {n}")
            done = subprocess.run([*_cli(), "practices", "add", "--pms-type", "Zedmed", "--pms-id", f"Z{n:03d}"],
                                  env=seeded, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"seeding failed: {done.stderr.strip()}")


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[:300]}")
    return elapsed, done


def _p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def measure(runs: int) -> dict[str, list[float]]:
    data = Path(tempfile.mkdtemp(prefix="halo-bench-cli-"))
    env = _environment(data)
    commands = _commands()
    try:
        _seed(env)
        # The seeding started the embedded Valkey (the GUID index); the listings never need it.
        subprocess.run([*_cli(), "embedded", "stop"], env=env, capture_output=True)
        for argv in commands.values():  # untimed: bytecode caches and the page cache
            _run(argv, env)
        _, listed = _run(commands["practices list --json"], env)
        if len(json.loads(listed.stdout)) != PRACTICES:
            raise RuntimeError(f"practices list --json listed {listed.stdout[:200]!r}, expected {PRACTICES} practices")
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                samples[name].append(_run(argv, env)[0])
        return samples
    finally:
        subprocess.run([*_cli(), "embedded", "stop"], env=env, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def main(options: list[str] | None = None) -> None:
    runs = QUICK_RUNS if "--quick" in (options or []) else RUNS
    samples = measure(runs)
    base = statistics.median(samples["python3 -c pass"])
    print(f"command line start-up: {runs} runs each, commands interleaved; embedded default with {PRACTICES} practices")
    print(f"{'command':<32} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'over pass':>10} {'target':>8}  met")
    for name, values in samples.items():
        median = statistics.median(values)
        target = TARGETS_MS.get(name)
        met = "" if target is None else ("yes" if median * 1000 <= target else "NO")
        print(f"{name:<32} {median * 1000:>10.0f} {_p90(values) * 1000:>8.0f} {min(values) * 1000:>8.0f} "
              f"{(median - base) * 1000:>10.0f} {f'{target:.0f}' if target else '-':>8}  {met}")


if __name__ == "__main__":
    main(sys.argv[1:])

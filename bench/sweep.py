"""Sweep: 100,000 practices, 10% stale. Time to plan and enqueue, the planner's peak memory, and the
Halo call rate the simulator observes second by second against the configured global limit, with
two workers sharing it.

``python3 dev.py bench sweep`` (``--quick``: 10,000 practices).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.targets import record

LIMIT = 50
OBSERVE_SECONDS = 15

# Peak memory is VmHWM from /proc, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec,
# so a planner started by this (large) benchmark process would report the parent's size as its own.
PLANNER = """
import json, time
from tasks.sweep import sweep_task
from worker import db

def mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

db.get_engine()
before = mb("VmHWM")
began = time.perf_counter()
enqueued = sweep_task.run(scheduled=False)
print(json.dumps({"enqueued": enqueued, "seconds": time.perf_counter() - began, "before_mb": before,
                  "peak_mb": mb("VmHWM")}))
"""



def main(argv: list[str] | None = None) -> None:
    import redis

    from bench.fleet import index_all, seed_database
    from bench.stack import KEY, ROOT, Stack
    from worker import db
    from worker.simulator.control import SimulatorControl

    n = 10_000 if argv and "--quick" in argv else 100_000
    stack = Stack()
    try:
        control = SimulatorControl(stack.sim_url, timeout=300, key=KEY)
        practices = control.seed(n)
        stack.postgres.create_database("bench_sweep")
        env = stack.env("bench_sweep", HALO_RECONCILER_RATE_LIMIT_PER_SECOND=str(LIMIT))
        stack.use(env)
        db.upgrade_schema()
        began = time.perf_counter()
        ids = seed_database(practices, stale_every=10)
        seeded = time.perf_counter() - began
        client = redis.Redis.from_url(stack.redis.url)
        index_all(client, ids, practices)
        control.set_latency(0.08)

        out = subprocess.run([sys.executable, "-c", PLANNER], cwd=ROOT, env={**os.environ, **env},
                             capture_output=True, text=True, check=True)
        plan = json.loads(out.stdout.strip().splitlines()[-1])

        control.reset_counters()
        workers = stack.start_workers(env, count=2, concurrency=8)
        time.sleep(OBSERVE_SECONDS)
        rate = control.rate().get("find_sites", [])
        stack.stop(workers)
        full = rate[1:-1] or rate  # the first and last seconds are partial
        print(f"sweep over {n} practices ({n // 10} stale) in PostgreSQL (seeded in {seeded:.1f} s)")
        print(f"{'plan and enqueue s':>19} {'enqueued':>9} {'planner RSS before MB':>22} {'planner peak MB':>16}")
        print(f"{plan['seconds']:>19.2f} {plan['enqueued']:>9} {plan['before_mb']:>22.0f} {plan['peak_mb']:>16.0f}")
        print(f"Halo calls per second seen by the simulator, limit {LIMIT}/s shared by 2 workers x 8 processes, "
              f"{OBSERVE_SECONDS} s: {rate}")
        print(f"max {max(full)}/s = {max(full) / LIMIT:.2f}x the limit (target <= 1.05x); "
              f"mean of full seconds {sum(full) / len(full):.1f}/s")
        record("sweep", f"planner peak memory under 200 MB ({n:,} practices)", figure=f"{plan['peak_mb']:.0f} MB",
               baseline=f"before planning {plan['before_mb']:.0f} MB", ratio=f"{plan['peak_mb'] / 200:.2f}x of 200 MB",
               met=plan["peak_mb"] < 200)
        record("sweep", "Halo rate never above the limit + 5% in any second", figure=f"max {max(full)}/s",
               baseline=f"limit {LIMIT}/s", ratio=f"{max(full) / LIMIT:.2f}x (<= 1.05x)", met=max(full) <= 1.05 * LIMIT)
        client.close()
    finally:
        stack.close()


if __name__ == "__main__":
    main(sys.argv[1:])

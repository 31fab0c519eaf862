"""Memory per concurrent reconciliation: Celery's prefork pool against its threads pool, at the same
concurrency, for the whole worker (``python3 dev.py bench pools``).

The work is I/O-bound (a reconciliation waits on Halo, the database and Redis), so concurrency is
how many reconciliations wait at once. At ``--concurrency 16`` each configuration reconciles
``memory.PRACTICES`` practices ``memory.ROUNDS`` times against the simulator on loopback (as
``bench.memory`` does, on a throw-away Valkey and an SQLite file), then reads /proc:

- prefork: the parent and 16 children. The whole worker is the sum of their PSS (a page shared by
  the 17 processes counts a 17th in each: the honest total), and the sum of their RSS (what ``top``
  adds up, counting shared pages in every process);
- threads: one process; its PSS is its RSS (nothing is shared).

Beside each, the same pool of the bare engine (Celery and kombu, one no-op task that waits 50 ms,
nothing of ours), so what is the pool's and what is ours shows in the same run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bench import memory
from bench.targets import record

CONCURRENCY = 16
TARGET_MB = 200.0


def _whole(result: dict) -> dict[str, float]:
    processes = [result["main"], *result["children"]]
    return {"pss": sum(p["pss"] for p in processes), "rss": sum(p["rss"] for p in processes),
            "peak": max(p["peak"] for p in processes), "processes": len(processes)}


def main(options: list[str] | None = None) -> None:
    from tests.utils.servers import start_redis
    from worker.simulator import Simulator, serve

    concurrency = CONCURRENCY
    options = options or []
    if "--concurrency" in options:
        concurrency = int(options[options.index("--concurrency") + 1])
    tmp = Path(tempfile.mkdtemp(prefix="halo-bench-pools-"))
    redis = start_redis(tmp / "valkey")
    sim = Simulator(key=memory.KEY)
    results: dict[tuple[str, str], dict] = {}
    try:
        with serve(sim) as server:
            base = {"BROKER_URL": redis.url, "HALO_BASE_URL": server.url, "HALO_SUBSCRIPTION_KEY": memory.KEY,
                    "HALO_RECONCILER_LOG_LEVEL": "WARNING", "HALO_RECONCILER_LOG_FORMAT": "json"}
            for pool in ("prefork", "threads"):
                results[("bare", pool)] = memory.run_bare(f"bare {pool}", redis.url, tmp, pool=pool,
                                                          concurrency=concurrency)
                results[("ours", pool)] = memory.run_config(f"ours {pool}", {}, base, tmp, sim, pool=pool,
                                                            concurrency=concurrency)
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"whole worker at --concurrency {concurrency}: {memory.PRACTICES} practices x {memory.ROUNDS} "
          f"reconciliations against the simulator (bare: as many no-op tasks); MB from /proc")
    print(f"{'worker':<8} {'pool':<8} {'processes':>9} {'PSS sum':>8} {'RSS sum':>8} {'peak RSS':>9} "
          f"{'per slot (PSS)':>15}")
    wholes = {key: _whole(result) for key, result in results.items()}
    for (who, pool), whole in wholes.items():
        print(f"{who:<8} {pool:<8} {whole['processes']:>9} {whole['pss']:>8.1f} {whole['rss']:>8.1f} "
              f"{whole['peak']:>9.1f} {whole['pss'] / concurrency:>15.1f}")
    ours_threads, ours_prefork = wholes[("ours", "threads")], wholes[("ours", "prefork")]
    bare_threads, bare_prefork = wholes[("bare", "threads")], wholes[("bare", "prefork")]
    print()
    print(f"ours over the bare engine: prefork {ours_prefork['pss'] - bare_prefork['pss']:+.1f} MB PSS, "
          f"threads {ours_threads['pss'] - bare_threads['pss']:+.1f} MB")
    print(f"threads against prefork (ours): {ours_threads['pss'] / ours_prefork['pss']:.2f}x the PSS, "
          f"{ours_threads['rss'] / ours_prefork['rss']:.2f}x the summed RSS")
    record("pools", f"whole worker at concurrency {concurrency} at most {TARGET_MB:.0f} MB (threads pool, PSS)",
           figure=f"{ours_threads['pss']:.0f} MB",
           baseline=f"prefork {ours_prefork['pss']:.0f} MB PSS ({ours_prefork['rss']:.0f} MB RSS summed); "
                    f"bare threads {bare_threads['pss']:.0f} MB",
           ratio=f"{ours_threads['pss'] / TARGET_MB:.2f}x of {TARGET_MB:.0f} MB; "
                 f"{ours_threads['pss'] / ours_prefork['pss']:.2f}x prefork",
           met=ours_threads["pss"] <= TARGET_MB)
    print(f"per concurrent reconciliation (PSS / concurrency): threads {ours_threads['pss'] / concurrency:.1f} MB, "
          f"prefork {ours_prefork['pss'] / concurrency:.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Is the simulator ever the bottleneck? Find sites requests per second over real HTTP on loopback,
from 16 threads with pooled httpx clients, with no latency and with 80 ms per call (the storm
benchmark's setting), against the ideal of 16 / 0.08 s = 200 calls/s at 80 ms.
"""

from __future__ import annotations

import statistics
import threading
import time

import httpx

from models import PmsType
from worker.simulator import Simulator, serve

THREADS = 16


def run(latency: float, requests: int) -> dict:
    sim = Simulator(key="bench")
    practices = sim.seed(1000, pms_type=PmsType.BEST_PRACTICE)
    sim.set_latency(latency)
    timings: list[float] = []
    lock = threading.Lock()
    with serve(sim) as server:
        def worker(share: list[str]) -> None:
            with httpx.Client(base_url=server.url, headers={"Ocp-Apim-Subscription-Key": "bench"}) as client:
                for pms_id in share:
                    began = time.perf_counter()
                    response = client.get("/integrator/sites", params={"practiceManagementSiteId": pms_id,
                                                                       "practiceManagementName": "Best Practice"})
                    assert response.status_code == 200
                    with lock:
                        timings.append(time.perf_counter() - began)

        ids = [practices[i % len(practices)][0] for i in range(requests)]
        threads = [threading.Thread(target=worker, args=(ids[i::THREADS],)) for i in range(THREADS)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
    timings.sort()
    return {"requests": requests, "wall": wall, "rate": requests / wall,
            "p50": statistics.median(timings) * 1000, "p95": timings[int(len(timings) * 0.95)] * 1000,
            "max_in_flight": sim.max_in_flight}


def main() -> None:
    print(f"simulator over HTTP on loopback, {THREADS} client threads")
    print(f"{'latency':>8} {'requests':>9} {'wall s':>7} {'req/s':>8} {'ideal req/s':>12} {'p50 ms':>7} {'p95 ms':>7} {'in flight':>10}")
    for latency, requests in [(0.0, 4000), (0.08, 1600)]:
        r = run(latency, requests)
        ideal = f"{THREADS / latency:.0f}" if latency else "-"
        print(f"{latency * 1000:>6.0f}ms {r['requests']:>9} {r['wall']:>7.2f} {r['rate']:>8.0f} {ideal:>12} "
              f"{r['p50']:>7.1f} {r['p95']:>7.1f} {r['max_in_flight']:>10}")


if __name__ == "__main__":
    main()

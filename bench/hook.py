"""Hook: what ``report_forbidden`` costs the application, coalesced (the practice is already queued)
and not (the first report publishes a Celery task), against a bare Redis ``SET NX`` on the same
server in the same run. The application and Redis share this 2-core machine.
"""

from __future__ import annotations

import statistics
import time
import uuid

N = 3000


def _pct(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(q * len(samples)))] * 1e6


def main() -> None:
    import redis

    from bench.fleet import index_all
    from bench.stack import Stack
    from worker.hooks import report_forbidden

    stack = Stack()
    try:
        stack.use(stack.env("unused"))
        client = redis.Redis.from_url(stack.redis.url)
        practices = [(f"BP-{i:06d}", str(uuid.uuid4())) for i in range(N)]
        index_all(client, list(range(1, N + 1)), practices)
        report_forbidden(practices[0][1])  # connections and scripts loaded before timing

        def timed(call, items) -> list[float]:
            out = []
            for item in items:
                began = time.perf_counter()
                taken = call(item)
                out.append(time.perf_counter() - began)
                if taken is False:
                    raise RuntimeError("a report was not taken: the figures would measure a failure")
            return out

        bare = timed(lambda i: client.set(f"bench:setnx:{i}", "1", nx=True, ex=60), range(N))
        first = timed(lambda p: report_forbidden(p[1], "Forbidden"), practices[1:])  # publishes
        folded = timed(lambda p: report_forbidden(p[1], "Forbidden"), practices[1:])  # already queued
        print(f"hook cost in the application process, {N - 1} calls each, microseconds")
        print(f"{'call':<36} {'p50 us':>8} {'p99 us':>8} {'p99 / SET NX p99':>17}")
        base = _pct(bare, 0.99)
        for name, samples in (("bare Redis SET NX", bare), ("report_forbidden, coalesced", folded),
                              ("report_forbidden, first (publishes)", first)):
            print(f"{name:<36} {statistics.median(samples) * 1e6:>8.0f} {_pct(samples, 0.99):>8.0f} "
                  f"{_pct(samples, 0.99) / base:>17.2f}")
        print("target: coalesced p99 within 3x a bare SET NX")
        client.close()
    finally:
        stack.close()


if __name__ == "__main__":
    main()

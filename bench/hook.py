"""Hook: what ``report_forbidden`` costs the application, coalesced (the practice is already queued)
and not (the first report publishes a Celery task), against a bare Redis ``SET NX`` on the same
server in the same run; and the same report over HTTP (``POST /v1/reports`` to a real
``halo-reconciler serve`` on loopback, one keep-alive connection), for applications in other
languages. The application, ``serve`` and Redis share this 2-core machine.

Beside the wall times, the client CPU per call (``time.process_time`` of this process over a block
of calls, so the server's share is not in it) of a coalesced report (the script answers ``folded``
and nothing is published) against a bare ``SET NX`` from a client with the hook's connection
settings, in alternating blocks so that both meet the same machine; the median of the blocks.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid

from bench.targets import record

N = 3000
CPU_ROUNDS, CPU_BLOCK = 11, 2000
TOKEN = "bench-api-token-0c5d"


def _pct(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(q * len(samples)))] * 1e6


def _serve(stack, env: dict[str, str]):
    """``halo-reconciler serve`` on a free loopback port; returns (process, base URL) once healthy."""
    import httpx

    from tests.utils.servers import free_port
    from tests.utils.waiting import wait_until
    from worker.processes import start_in_new_group

    port = free_port()
    proc = start_in_new_group([sys.executable, "-m", "worker.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env={**os.environ, **env, "HALO_RECONCILER_API_TOKENS": TOKEN},
                              stdout=open(stack.tmp / "serve.log", "wb"), stderr=subprocess.STDOUT)
    stack.procs.append(proc)  # stopped with the stack
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, timeout=60, interval=0.1,
               what="serve answering /healthz", ignoring=(httpx.HTTPError,), log=stack.tmp / "serve.log")
    return proc, url


def client_cpu(client, practices: list[tuple[str, str]]) -> dict[str, list[float]]:
    """Client CPU microseconds per call, one figure per block, SET NX and the folded report alternating."""
    from worker.hooks import report_forbidden

    guids = [guid for _, guid in practices[:CPU_BLOCK]]
    per_call: dict[str, list[float]] = {"set": [], "report": []}
    for round_ in range(CPU_ROUNDS):
        began = time.process_time()
        for i in range(CPU_BLOCK):
            client.set(f"bench:cpu:{round_}:{i}", "1", nx=True, ex=60)
        per_call["set"].append((time.process_time() - began) / CPU_BLOCK * 1e6)
        began = time.process_time()
        for guid in guids:
            report_forbidden(guid, "Forbidden")
        per_call["report"].append((time.process_time() - began) / CPU_BLOCK * 1e6)
    return per_call


def hook_client(url: str):
    """A plain client with the hook's connection settings (``worker.coordination.get_redis(bounded=True)``)."""
    import redis

    from worker.config import get_settings
    from reconciler.adapters.coordination.client import no_retry

    timeout = get_settings().report_timeout_seconds
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30,
                                retry=no_retry())



def main() -> None:
    import httpx
    import redis

    from bench.fleet import index_all
    from bench.stack import Stack
    from reconciler.adapters.coordination import keys
    from worker.hooks import report_forbidden

    stack = Stack()
    try:
        env = stack.env("unused")
        stack.use(env)
        client = hook_client(stack.redis.url)
        practices = [(f"BP-{i:06d}", str(uuid.uuid4())) for i in range(2 * N)]
        index_all(client, list(range(1, 2 * N + 1)), practices)
        by_hook, by_http = practices[:N], practices[N:]
        report_forbidden(by_hook[0][1])  # connections and scripts loaded before timing
        _, url = _serve(stack, env)
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

        def over_http(guid: str) -> bool:
            response = api.post("/v1/reports", json={"guid": guid, "message": "Forbidden"})
            return response.status_code == 202 and response.json()["taken"] is True

        over_http(by_http[0][1])  # the connection opened before timing

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
        first = timed(lambda p: report_forbidden(p[1], "Forbidden"), by_hook[1:])  # publishes
        folded = timed(lambda p: report_forbidden(p[1], "Forbidden"), by_hook[1:])  # already queued
        before = {k.decode(): int(v) for k, v in client.hgetall(keys.report_outcomes()).items()}
        cpu = client_cpu(client, by_hook[1:])
        after = {k.decode(): int(v) for k, v in client.hgetall(keys.report_outcomes()).items()}
        cpu_outcomes = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        if set(cpu_outcomes) != {"folded"}:
            raise RuntimeError(f"the CPU rounds were meant to fold every report, they did: {cpu_outcomes}")
        http_first = timed(lambda p: over_http(p[1]), by_http[1:])
        http_folded = timed(lambda p: over_http(p[1]), by_http[1:])
        outcomes = {k.decode(): int(v) for k, v in client.hgetall(keys.report_outcomes()).items()}
        print(f"hook cost in the application process, {N - 1} calls each, microseconds")
        print(f"{'call':<44} {'p50 us':>8} {'p99 us':>8} {'p99 / SET NX p99':>17}")
        base = _pct(bare, 0.99)
        for name, samples in (("bare Redis SET NX", bare), ("report_forbidden, coalesced", folded),
                              ("report_forbidden, first (publishes)", first),
                              ("POST /v1/reports over HTTP, coalesced", http_folded),
                              ("POST /v1/reports over HTTP, first (publishes)", http_first)):
            print(f"{name:<44} {statistics.median(samples) * 1e6:>8.0f} {_pct(samples, 0.99):>8.0f} "
                  f"{_pct(samples, 0.99) / base:>17.2f}")
        print("target: coalesced p99 within 3x a bare SET NX (the Python hook); over HTTP the same report "
              "adds a loopback request to serve")
        print(f"report outcomes counted in Redis for both paths: {outcomes}")
        print()
        set_cpu, report_cpu = statistics.median(cpu["set"]), statistics.median(cpu["report"])
        print(f"client CPU per call (time.process_time of this process), {CPU_ROUNDS} alternating blocks of "
              f"{CPU_BLOCK} calls, median of the blocks")
        print(f"{'call':<44} {'CPU us':>8} {'min':>8} {'max':>8} {'/ SET NX':>9}")
        for name, samples in (("bare Redis SET NX (hook's client settings)", cpu["set"]),
                              ("report_forbidden, coalesced ('folded')", cpu["report"])):
            print(f"{name:<44} {statistics.median(samples):>8.1f} {min(samples):>8.1f} {max(samples):>8.1f} "
                  f"{statistics.median(samples) / set_cpu:>9.2f}")
        print(f"target: coalesced report's client CPU at most 2x a bare SET NX's: {report_cpu / set_cpu:.2f}x "
              f"({sum(cpu_outcomes.values())} reports in the CPU blocks, outcomes {cpu_outcomes})")
        p99_ratio = _pct(folded, 0.99) / base
        record("hook", "coalesced report's p99 within 3x a bare SET NX", figure=f"{_pct(folded, 0.99):.0f} us",
               baseline=f"SET NX p99 {base:.0f} us", ratio=f"{p99_ratio:.2f}x (<= 3x)", met=p99_ratio <= 3)
        record("hook", "coalesced report's client CPU at most 2x a bare SET NX", figure=f"{report_cpu:.1f} us",
               baseline=f"SET NX {set_cpu:.1f} us", ratio=f"{report_cpu / set_cpu:.2f}x (<= 2x)",
               met=report_cpu <= 2 * set_cpu)
        api.close()
        client.close()
    finally:
        stack.close()

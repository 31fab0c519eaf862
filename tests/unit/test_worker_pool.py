"""`halo-reconciler worker` runs Celery's threads pool, 16 at once, unless the caller chose; the
worker's start-up knows how many tasks its one process runs at once."""

from __future__ import annotations

import pytest

from worker.cli import pool_defaults


@pytest.mark.parametrize(("given", "expected"), [
    ([], ["--pool", "threads", "--concurrency", "16"]),
    (["--concurrency", "4"], ["--pool", "threads", "--concurrency", "4"]),
    (["-c", "4"], ["--pool", "threads", "-c", "4"]),
    (["--pool", "prefork"], ["--pool", "prefork"]),
    (["--pool=prefork", "-c", "2"], ["--pool=prefork", "-c", "2"]),
    (["-P", "prefork"], ["-P", "prefork"]),
    (["-Pprefork"], ["-Pprefork"]),
    (["--pool", "threads"], ["--concurrency", "16", "--pool", "threads"]),
], ids=["default", "concurrency", "short-concurrency", "prefork", "prefork-equals", "short-pool",
        "short-pool-joined", "threads-chosen"])
def test_the_threads_pool_is_the_default_and_prefork_stays_available(given, expected):
    assert pool_defaults(given) == expected


def test_the_worker_knows_its_threads():
    from worker.process import threads_of

    class Worker:
        def __init__(self, pool, concurrency):
            self.pool_cls, self.concurrency = pool, concurrency

    assert threads_of(Worker("threads", 16)) == 16
    assert threads_of(Worker("prefork", 16)) == 0
    from celery.concurrency.thread import TaskPool

    assert threads_of(Worker(TaskPool, 8)) == 8
    assert threads_of(None) == 0

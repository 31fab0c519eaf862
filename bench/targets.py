"""The targets a benchmark measured in this run, gathered for one table (``python3 dev.py bench``).

A benchmark calls ``record`` where it has computed a figure and the baseline it is compared with, in
the same run; the runner prints every recorded target at the end and, with ``--write``, puts that table
into docs/BENCHMARKS.md. So the targets table is never typed by hand: each row names the run it came
from, and a row whose benchmark did not run in that invocation is not there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The code the cli and memory benchmarks' "(main)" rows run, checked out of git: the main branch, or
# the commit named by HALO_BENCH_BASELINE (say, the last release, once main holds the change).
BASELINE_REF = os.environ.get("HALO_BENCH_BASELINE", "main")


@dataclass(frozen=True)
class Target:
    benchmark: str
    target: str  # what is asked, e.g. "worker CPU at most 3x a no-op Celery task"
    figure: str  # what was measured, e.g. "9.55 ms"
    baseline: str  # what it is compared with in the same run, e.g. "no-op task 1.30 ms"
    ratio: str  # the comparison, e.g. "7.35x (<= 3x)"
    met: bool


RECORDED: list[Target] = []


def record(benchmark: str, target: str, *, figure: str, baseline: str, ratio: str, met: bool) -> Target:
    row = Target(benchmark, target, figure, baseline, ratio, met)
    RECORDED.append(row)
    return row


def table(rows: list[Target]) -> str:
    """The rows as a Markdown table (it is read in the document, not in a terminal)."""
    lines = ["| benchmark | target | measured | baseline (same run) | ratio | |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.benchmark} | {r.target} | {r.figure} | {r.baseline} | {r.ratio} | "
              f"{'met' if r.met else '**missed**'} |" for r in rows]
    return "\n".join(lines)

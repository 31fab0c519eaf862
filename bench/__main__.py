"""``python -m bench [NAME ...]``: run the named benchmarks (all when none is named)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "storm": "bench.storm",
    "hook": "bench.hook",
    "sweep": "bench.sweep",
    "embedded": "bench.embedded",
    "simulator": "bench.simulator_throughput",
}


def main(argv: list[str]) -> int:
    options = [a for a in argv if a.startswith("--")]
    names = [a for a in argv if not a.startswith("--")] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        module.main(options) if name in ("storm", "sweep") else module.main()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

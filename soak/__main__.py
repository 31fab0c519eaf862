"""``python3 dev.py soak [--minutes N] [--seed S] [--mix full|suite]``: the chaos soak; exit 1 on any violation."""

from __future__ import annotations

import argparse
import sys
import time

from soak.invariants import INVARIANTS
from soak.report import table
from soak.run import soak
from soak.schedule import MIXES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 dev.py soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the chaos phase (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="the seed of the schedule (default: from the clock)")
    parser.add_argument("--mix", choices=sorted(MIXES), default="full", help="which faults (default full)")
    parser.add_argument("--practices", type=int, default=24, help="size of the fleet (default 24)")
    parser.add_argument("--settle", type=float, default=150.0, help="most seconds to let it settle (default 150)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (kept anyway on a violation)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.minutes > 24 * 60 or args.practices < 4 or args.practices > 2000:
        parser.error("--minutes must be in (0, 1440] and --practices in [4, 2000]")
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    try:
        outcome = soak(minutes=args.minutes, seed=seed, mix=args.mix, practices=args.practices,
                       settle_seconds=args.settle, keep_logs=args.keep_logs,
                       say=lambda line: print(line, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print("soak: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print(table(outcome, [name for name, _ in INVARIANTS]))
    return 1 if outcome.violations else 0


if __name__ == "__main__":
    sys.exit(main())

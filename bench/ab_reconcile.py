"""An interleaved A/B of one reconciliation's CPU, in one process: this tree against another's adapters.

    .venv/bin/python -m bench.ab_reconcile OTHER_TREE [--rounds 12] [--chunk 25]

OTHER_TREE is a checkout or export of another commit (``git archive REV | tar -x -C DIR``). The
methods of its ``HaloClient`` (``reconciler/adapters/halo_client.py``) and ``SqlStore``
(``reconciler/adapters/store.py``) are loaded beside this tree's, and the two sets are swapped onto
the classes in place between blocks, so both variants run in the same process, against the same
servers, in alternating rounds (the machine's noise falls on both alike): ``reconcile_practice.apply``
with the real wiring, PostgreSQL, Valkey and the simulator at 0 ms, ``chunk`` unchanged runs and
``chunk`` switches per variant and round. Python calls per run are counted with ``sys.setprofile``
(exact, whatever the machine's load); CPU per run is ``time.process_time`` over each block, median
and minimum of the blocks. Only those two adapters differ between the variants: changes elsewhere
are in both.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path


def _load(name: str, path: Path):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _methods(cls: type) -> dict[str, object]:
    return {name: value for name, value in vars(cls).items() if callable(value) and not name.startswith("__")}


def main(argv: list[str]) -> None:
    other = Path(argv[0]).resolve()
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 12
    chunk = int(argv[argv.index("--chunk") + 1]) if "--chunk" in argv else 25
    from bench.fleet import seed_database
    from bench.stack import KEY, Stack
    from bench.storm import BENCH_SETTINGS
    from worker.simulator.control import SimulatorControl

    stack = Stack()
    try:
        control = SimulatorControl(stack.sim_url, key=KEY)
        control.set_latency(0)
        stack.postgres.create_database("ab")
        stack.use(stack.env("ab", **BENCH_SETTINGS))
        from worker import db

        db.upgrade_schema()
        import worker.process  # noqa: F401  (the worker's process set-up)
        from reconciler.adapters import halo_client, store
        from tasks.reconcile import reconcile_practice

        theirs = {halo_client.HaloClient: _methods(_load("ab_other_halo_client", other / "reconciler/adapters/halo_client.py").HaloClient),
                  store.SqlStore: _methods(_load("ab_other_store", other / "reconciler/adapters/store.py").SqlStore)}
        ours = {cls: _methods(cls) for cls in theirs}
        variants = {"other": theirs, "this": ours}

        def use(variant: str) -> None:
            for cls, methods in variants[variant].items():
                for name in ours[cls]:  # a method only this tree has stays (the other's never calls it)
                    if name in methods:
                        setattr(cls, name, methods[name])

        need = rounds * 2 * chunk + 20
        unchanged = seed_database(control.seed(need, start=1))
        moving = control.seed(need, start=1_000_000)
        ids = {"unchanged": iter(unchanged), "switch": iter(seed_database(moving))}
        for pms_id, _ in moving:
            control.change_guid("BestPractice", pms_id)
        want = {"unchanged": "unchanged", "switch": "infrastructure_change"}

        def run(case: str) -> None:
            verdict = reconcile_practice.apply(args=[next(ids[case]), "forbidden"], throw=True).result
            if verdict != want[case]:
                raise AssertionError(f"{case}: got {verdict}")

        calls: dict[tuple[str, str], int] = {}
        for variant in variants:  # a warm-up of each, then one counted run of each case
            use(variant)
            for case in ids:
                for _ in range(5):
                    run(case)
                counted = [0]

                def count(frame, event, arg, counted=counted) -> None:  # noqa: ANN001
                    if event in ("call", "c_call"):
                        counted[0] += 1

                sys.setprofile(count)
                try:
                    run(case)
                finally:
                    sys.setprofile(None)
                calls[(variant, case)] = counted[0]
        cpu: dict[tuple[str, str], list[float]] = {(v, c): [] for v in variants for c in ids}
        for n in range(rounds):
            for variant in (("other", "this") if n % 2 == 0 else ("this", "other")):
                use(variant)
                for case in ids:
                    began = time.process_time()
                    for _ in range(chunk):
                        run(case)
                    cpu[(variant, case)].append((time.process_time() - began) / chunk * 1000)
        use("this")
    finally:
        stack.close()
    print(f"in-process A/B against {other}: {rounds} alternating rounds of {chunk} runs per case and variant "
          "(reconcile_practice.apply, PostgreSQL, Valkey, simulator at 0 ms)")
    print(f"{'case':<10} {'variant':<7} {'calls/run':>9} {'CPU ms median':>14} {'min':>6}")
    for case in ids:
        for variant in variants:
            blocks = cpu[(variant, case)]
            print(f"{case:<10} {variant:<7} {calls[(variant, case)]:>9} {statistics.median(blocks):>14.2f} {min(blocks):>6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The path of one 403 at run time, not only for imports (``docs/ARCHITECTURE.md``'s hops).

A ``sys.setprofile`` trace of one real switch, run by the Celery task's own function in this process
(``halo.reconcile_practice``: the real wiring, Valkey, PostgreSQL, the simulator over HTTP): every
call of the project's own code, which room it runs in and which room called it. The test holds the
run to the steps ``reconcile`` names, in their order, and fails when the calls, the crossings of a
package line or the calls that go up a layer grow past their bounds (issue 23 measured 371 calls,
167 crossings and 39 upward calls before the loop was rewritten).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from models import Action, PmsType
from tasks.reconcile import reconcile_practice
from worker import admin, wiring
from worker.config import get_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The rooms, highest first (``docs/ARCHITECTURE.md``); a call to a lower rank is downward.
RANK = {"tasks": 0, "worker": 1, "reconciler.usecases": 2, "reconciler.adapters": 2, "reconciler": 3,
        "models": 4, "reconciler.core": 5}
OWN = tuple(str(ROOT / name) + "/" for name in ("tasks", "worker", "reconciler", "models"))
SIMULATOR = str(ROOT / "worker" / "simulator") + "/"

# The run's steps and the ports they reach, in the order a switch takes them.
PATH = [
    "tasks.reconcile:reconcile_practice",
    "worker.wiring:reconcile_deps",
    "reconciler.usecases.reconcile:reconcile",
    "reconciler.usecases.reconcile:_Run.claim",
    "reconciler.adapters.coordination.runs:RedisRuns.begin",
    "reconciler.usecases.reconcile:_Run.read",
    "reconciler.adapters.store:SqlStore.practice_for_run",
    "reconciler.usecases.reconcile:_Run.gate",
    "reconciler.usecases.reconcile:_Run.ask",
    "reconciler.adapters.halo_client:HaloClient.find_sites",
    "reconciler.adapters.coordination.runs:RedisRuns.answered",
    "reconciler.core.classify:classify",
    "reconciler.adapters.store:SqlStore.guard_state",
    "reconciler.core.policy:decide",
    "reconciler.usecases.reconcile:_Run.verify",
    "reconciler.adapters.halo_client:HaloClient.get_site",
    "reconciler.core.classify:verify_switch",
    "reconciler.core.policy:decide",
    "reconciler.usecases.reconcile:_Run.write",
    "reconciler.adapters.store:SqlStore.write_run",
    "reconciler.usecases.reconcile:_Run.finish",
    "reconciler.adapters.coordination.runs:RedisRuns.finish",
    "reconciler.usecases.reconcile:after_run",
]

# Bounds over the figures this trace gave when it was written (see docs/ARCHITECTURE.md); a change
# that adds calls or crossings on the path of every 403 has to raise them here, on purpose.
MAX_CALLS = 340  # 305 when written; 274 once the shell's Redis proxy went (issue 23); 346 with issue 21's
# run-finished announcement and change event, and issue 24's probe scheduling, claim renewal, store
# outage ride-out and every Halo string bounded at parse time (``core.sites``: 50 of them); 307 with
# the run's cost cut (issue 23 item 6: deps built once per process, one claim renewer per process, no
# retry library, the Halo transport called directly, no probe scheduling built for nothing)
MAX_CROSSINGS = 130  # 126 when written; 93 without the proxy; 126 with the above; 118 after the cost cut; 110 now
MAX_UPWARD = 20  # 37 when written (33 the adapters calling the shell's Redis proxy); 12 now


def room(module: str) -> str:
    for name in ("reconciler.usecases", "reconciler.adapters", "reconciler.core"):
        if module == name or module.startswith(name + "."):
            return name
    return module.split(".")[0]


class Trace:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []  # (callee "module:qualname", caller module)

    def __call__(self, frame, event, arg) -> None:  # noqa: ANN001
        if event != "call":
            return
        filename = frame.f_code.co_filename
        if not filename.startswith(OWN) or filename.startswith(SIMULATOR):
            return
        caller = frame.f_back
        while caller is not None and not (caller.f_code.co_filename.startswith(OWN)
                                          and not caller.f_code.co_filename.startswith(SIMULATOR)):
            caller = caller.f_back
        self.calls.append((f"{frame.f_globals.get('__name__')}:{frame.f_code.co_qualname}",
                           caller.f_globals.get("__name__") if caller is not None else None))

    def crossings(self) -> list[tuple[str, str]]:
        return [(room(caller), room(callee.split(":")[0])) for callee, caller in self.calls
                if caller is not None and room(caller) != room(callee.split(":")[0])]

    def upward(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.crossings() if RANK[b] < RANK[a]]


def traced(call) -> Trace:  # noqa: ANN001
    trace = Trace()
    sys.setprofile(trace)
    try:
        call()
    finally:
        sys.setprofile(None)
    return trace


def test_one_switch_takes_the_documented_path_within_its_bounds(stack, monkeypatch):
    sim, _ = stack
    monkeypatch.setenv("HALO_RECONCILER_RATE_LIMIT_PER_SECOND", "10000")  # no wait for a token
    get_settings.cache_clear()
    wiring.close_halo_client()
    sim.add_practice(pms_type=PmsType.ZEDMED, pms_id="Z1", practice_name="Clinic Z1")
    pid = admin.onboard(str(PmsType.ZEDMED), "Z1").id
    assert reconcile_practice(pid, "sweep") == "unchanged"  # warm: scripts loaded, clients built
    new = sim.change_guid(PmsType.ZEDMED, "Z1")

    trace = traced(lambda: reconcile_practice(pid, "forbidden"))

    assert admin.practice(pid).halo_guid == new
    assert admin.audit(pid, limit=1)[0].action == str(Action.SWITCHED)
    names = [callee for callee, _ in trace.calls]
    at = 0
    for step in PATH:  # each step in order, after the one before it
        assert step in names[at:], (step, Counter(names).most_common(40))
        at = names.index(step, at) + 1
    # One database session; the core once per answer from Halo (Find sites, then Get site status).
    seen = Counter(names)
    assert seen["worker.db:new_session"] == 1, seen
    assert (seen["reconciler.core.classify:classify"], seen["reconciler.core.classify:verify_switch"]) == (1, 1)
    assert seen["reconciler.core.policy:decide"] == 2, seen
    crossings, upward = trace.crossings(), trace.upward()
    summary = {"calls": len(trace.calls), "crossings": len(crossings), "upward": len(upward),
               "upward_by_callee": Counter(callee for callee, caller in trace.calls if caller is not None
                                           and RANK[room(callee.split(":")[0])] < RANK[room(caller)]).most_common(),
               "upward_by_pair": Counter(upward).most_common(), "crossings_by_pair": Counter(crossings).most_common()}
    print(summary)  # pytest -s shows the figures docs/ARCHITECTURE.md quotes
    assert len(trace.calls) <= MAX_CALLS, summary
    assert len(crossings) <= MAX_CROSSINGS, summary
    assert len(upward) <= MAX_UPWARD, summary

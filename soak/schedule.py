"""What happens when, drawn from a seed: world moves, report bursts and faults (pure, no I/O).

The same seed, length and mix give the same schedule, so a run that found a violation can be replayed.
Times are seconds from the start of the chaos phase; a fault with a duration ends by itself (its end
is an event of the schedule too), and every fault has ended before the chaos phase does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

# Every fault the soak injects, and how long those that last are held (seconds, drawn between).
FAULTS: dict[str, tuple[float, float] | None] = {
    "kill_pool": None,          # SIGKILL of one pool process of a worker (the worker forks another)
    "kill_worker": (2, 6),      # SIGKILL of a whole worker (its group); started again after the duration
    "valkey_restart": None,     # Valkey stopped and started again (its append-only file kept)
    "postgres_restart": None,   # PostgreSQL stopped (fast shutdown) and started again on its data
    "broker_stall": (2, 8),     # the TCP proxy in front of Valkey stops forwarding
    "halo_429": None,           # Halo answers 429 with Retry-After (a few calls)
    "halo_5xx": None,           # Halo answers 500/502/503/504 (a few calls)
    "halo_garbage": None,       # Halo answers 200 with HTML or JSON that is not the schema (a few calls)
    "halo_latency": (3, 10),    # every Halo answer late by up to 1.5 s
    "quota": (3, 12),           # Halo answers 403 quota exceeded
    "ip_refused": (3, 12),      # Halo answers 403 Caller Ip Not Allowed
    "key_rotated": (3, 12),     # Halo answers 401: the key was rotated under the worker
    "second_beat": (10, 30),    # a second beat runs beside the first
}

# Mixes: the full mix is every fault; ``suite`` is the mix the short run in the test suite uses
# (the faults main holds today: see docs/RELIABILITY.md "Chaos soak").
MIXES: dict[str, tuple[str, ...]] = {
    "full": tuple(FAULTS),
    "suite": ("kill_pool", "broker_stall", "halo_429", "halo_5xx", "halo_garbage", "halo_latency",
              "postgres_restart", "second_beat"),
}

WORLD_MOVES = ("infrastructure", "new_owner", "initialising", "removed")


@dataclass(frozen=True)
class Event:
    at: float
    kind: str  # "world", "burst", "fault", "fault_end"
    name: str  # a world move, a channel ("hook"/"http"), a fault
    args: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Schedule:
    seed: int
    seconds: float
    mix: str
    events: tuple[Event, ...]

    def count(self, kind: str) -> int:
        return sum(e.kind == kind for e in self.events)


def draw(seed: int, seconds: float, practices: int, *, mix: str = "full", fault_every: float = 8.0,
         move_every: float = 4.0, burst_every: float = 2.5) -> Schedule:
    """The schedule of a chaos phase ``seconds`` long over ``practices`` practices (indices 0..n-1)."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; one of {', '.join(MIXES)}")
    if seconds <= 0 or practices < 4:
        raise ValueError("a soak needs a positive length and at least 4 practices")
    rng = random.Random(seed)
    events: list[Event] = []
    end = seconds - 2.0  # every fault over before the chaos phase ends

    t = rng.uniform(1, move_every)
    while t < end:
        move = rng.choice(WORLD_MOVES)
        index = rng.randrange(practices)
        args: dict[str, Any] = {"practice": index}
        if move == "initialising":
            args["active_after"] = round(rng.uniform(2, 10), 2)
        if move == "removed":
            args["back_after"] = round(rng.uniform(3, 15), 2) if rng.random() < 0.6 else None
        events.append(Event(round(t, 2), "world", move, args))
        t += rng.expovariate(1 / move_every)

    t = rng.uniform(0.5, burst_every)
    while t < end:
        size = rng.randint(2, min(12, practices))
        chosen = sorted(rng.sample(range(practices), size))
        events.append(Event(round(t, 2), "burst", rng.choice(("hook", "http")),
                            {"practices": chosen, "repeat": rng.randint(1, 8)}))
        t += rng.expovariate(1 / burst_every)

    kinds = MIXES[mix]
    busy_until: dict[str, float] = {}
    t = rng.uniform(2, fault_every)
    while t < end:
        name = kinds[rng.randrange(len(kinds))]
        span = FAULTS[name]
        duration = round(rng.uniform(*span), 2) if span else 0.0
        if busy_until.get(name, -1) < t and t + duration < end:
            args = _fault_args(rng, name)
            events.append(Event(round(t, 2), "fault", name, {**args, "duration": duration}))
            if span:
                events.append(Event(round(t + duration, 2), "fault_end", name, {}))
            busy_until[name] = t + duration + 1.0
        t += rng.expovariate(1 / fault_every)

    events.sort(key=lambda e: (e.at, e.kind != "fault_end"))
    return Schedule(seed, seconds, mix, tuple(events))


def _fault_args(rng: random.Random, name: str) -> dict[str, Any]:
    if name == "halo_429":
        return {"times": rng.randint(1, 6), "retry_after": rng.choice((0, 1))}
    if name == "halo_5xx":
        return {"times": rng.randint(1, 8), "status": rng.choice((500, 502, 503, 504))}
    if name == "halo_garbage":
        return {"times": rng.randint(1, 4), "kind": rng.choice(("non_json", "garbage_json"))}
    if name == "halo_latency":
        return {"delay": round(rng.uniform(0.2, 1.5), 2)}
    if name in ("kill_pool", "kill_worker"):
        return {"worker": rng.randrange(2)}
    return {}

"""The integrator-wide breaker's state in the coordination store, shared by every worker and the CLI.

``halo:breaker:{scope}`` holds an open breaker (``reconciler.core.breaker`` decides everything about
it; this module stores and reads it), ``halo:breaker-probe:{scope}`` is the one probe's lock, and
``halo:breaker-waiting`` the practices whose automatic work arrived while it was open, and
``halo:breaker-probe-scheduled`` says that a probe task is on its way (``reconciler.usecases.probing``
schedules it): its value is the probe's due time, and it lives until a little past it, so a probe
message that was lost is noticed (the key is gone while a breaker is still open) and scheduled again.
Times are epoch seconds from the caller's clock (tests drive an hour in a moment).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler import logs
from reconciler.adapters.coordination import keys
from reconciler.adapters.coordination.client import CoordinationClient, TransactionConflict
from reconciler.core import breaker as rules
from reconciler.core.breaker import Admission, BreakerState
from reconciler.core.vocabulary import Verdict

log = logs.get_logger()

# A breaker nobody probes (no work, no beat) is forgotten after a week; a typo'd key's with it.
STATE_SECONDS = 7 * 24 * 3600
# How long past its due time a scheduled probe's mark outlives it: a probe that has not run by then
# (its message lost with a worker or a broker) is scheduled again by whoever looks next.
PROBE_GRACE_SECONDS = 30


class RedisBreaker:
    def __init__(self, redis: CoordinationClient, *, key_fingerprint: str, base_seconds: float, cap_seconds: float,
                 probe_lock_seconds: int = 330) -> None:
        self.redis = redis
        self.key_fingerprint = key_fingerprint
        self.base_seconds = base_seconds
        self.cap_seconds = cap_seconds
        # A probe whose run died gives the lock back when it expires (past the task's hard limit), or as
        # soon as its practice's claim has expired (``admit``'s holder).
        self.probe_lock_seconds = probe_lock_seconds

    @property
    def scopes(self) -> tuple[str, str]:
        return rules.scopes_of(self.key_fingerprint)

    @property
    def state_keys(self) -> list[str]:
        """The hashes ``states`` reads, in ``scopes`` order (a run's first round trip reads them too)."""
        return [keys.breaker(scope) for scope in self.scopes]

    @property
    def closing_keys(self) -> list[str]:
        """What a run's finish looks at to know whether ``close`` has anything to do: this process's
        breakers, and the work kept meanwhile (kept by another key's breaker, it still waits for a
        normal answer: a fixed key's first success runs it)."""
        return [*self.state_keys, keys.breaker_waiting()]

    def states(self) -> list[BreakerState]:
        """The open breakers that stop this process (its key's and the integrator's)."""
        pipe = self.redis.pipeline(transaction=False)
        for scope in self.scopes:
            pipe.hgetall(keys.breaker(scope))
        raw = pipe.execute()
        return self.parse_states(raw)

    def parse_states(self, raw: list[dict]) -> list[BreakerState]:
        """``states`` from the hashes of ``state_keys``, as read (a dict or a flat field, value list each)."""
        fields = [dict(zip(r[::2], r[1::2])) if isinstance(r, list) else r for r in raw]
        return [state for scope, found in zip(self.scopes, fields) if (state := _parse(scope, found)) is not None]

    def peek(self, *, now: float) -> Admission:
        """What a run would be let do now, without taking the probe."""
        return rules.admission(self.states(), now=now)

    def admit(self, *, now: float, states: list[BreakerState] | None = None, holder: int | None = None) -> Admission:
        """ADMIT (closed), PROBE (this caller holds the one probe) or BLOCKED. ``states``: read already
        in this instant (a run's first round trip), else read here. ``holder``: the practice whose claimed
        run would probe; a probe lock whose practice no run holds any more (the prober died) is taken over
        (``_take_probe``)."""
        states = self.states() if states is None else states
        verdict = rules.admission(states, now=now)
        if verdict is not Admission.PROBE:
            return verdict
        taken = [self._take_probe(s.scope, str(holder or 1)) for s in states]
        if all(taken):
            return Admission.PROBE
        # Another run is probing: give back what we took, and wait for its answer.
        self._release_probes(state.scope for state, mine in zip(states, taken) if mine)
        return Admission.BLOCKED

    def _take_probe(self, scope: str, holder: str) -> bool:
        """The probe lock of ``scope``, holding the probing practice's id. Held by a practice no run holds
        any more (its claim expired: the probing worker died), it is taken over; plain commands and a
        WATCH, no Lua (the unit tests' fakeredis runs none)."""
        name = keys.breaker_probe(scope)
        if self.redis.set(name, holder, nx=True, ex=self.probe_lock_seconds):
            return True
        if holder == "1":
            return False
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(name)
                held = pipe.get(name)
                held = held.decode() if isinstance(held, bytes) else held
                if held is None or not held.isdigit() or held == "1" or pipe.exists(keys.processing(held)):
                    return False
                pipe.multi()
                pipe.set(name, holder, ex=self.probe_lock_seconds)
                pipe.execute()
            except TransactionConflict:
                return False
        log.warning("breaker_probe_taken_over", scope=scope, dead_prober_practice_id=int(held))
        return True

    def keep(self, practice_id: int) -> None:
        """Keep a practice's work until the breaker closes."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(keys.breaker_waiting(), practice_id)
        pipe.expire(keys.breaker_waiting(), STATE_SECONDS)
        pipe.execute()

    def trip(self, cause: Verdict, *, now: float) -> BreakerState:
        """Halo refused a call for ``cause``: open the breaker or, after a failed probe, wait longer."""
        scope = rules.scope_for(cause, self.key_fingerprint)
        current = _parse(scope, self.redis.hgetall(keys.breaker(scope)))
        state = rules.trip(current, scope=scope, cause=cause, now=now, base=self.base_seconds, cap=self.cap_seconds)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.breaker(scope), mapping={"cause": str(state.cause), "opened_at": repr(state.opened_at),
                                                "failures": state.failures,
                                                "next_probe_at": repr(state.next_probe_at)})
        pipe.expire(keys.breaker(scope), STATE_SECONDS)
        pipe.delete(keys.breaker_probe(scope))
        pipe.execute()
        return state

    def release_probe(self) -> None:
        """A probe that got no verdict about the breaker (Halo unavailable): the next run may probe."""
        self._release_probes(self.scopes)

    def close(self) -> tuple[list[Verdict], list[int]]:
        """Halo answered normally: close this process's breakers, and every other key's ``unauthorized``
        one (the integration answers with the key in use; a process still holding a refused key is
        refused at its next call and opens its own again). Returns the causes that were open and the
        practices kept meanwhile (each once; the caller queues them), whichever breaker kept them."""
        states = self.states() + [s for s in open_breakers(self.redis)
                                  if s.scope not in self.scopes and s.cause is Verdict.UNAUTHORIZED]
        pipe = self.redis.pipeline(transaction=True)
        for state in states:
            pipe.delete(keys.breaker(state.scope), keys.breaker_probe(state.scope))
        pipe.delete(keys.breaker_probe_scheduled())
        pipe.smembers(keys.breaker_waiting())
        pipe.delete(keys.breaker_waiting())
        *_, waiting, _ = pipe.execute()
        return sorted({state.cause for state in states}), sorted(int(pid) for pid in waiting)

    # --- the probe task's schedule (``reconciler.usecases.probing``) -----------------------------

    def claim_probe_schedule(self, *, due: float, now: float) -> bool:
        """Take the one scheduled probe for ``due`` (False: one is on its way already). The mark lives
        until ``PROBE_GRACE_SECONDS`` past ``due``: a probe not run by then is taken to be lost."""
        ttl = max(1, int(due - now + 0.999)) + PROBE_GRACE_SECONDS
        return bool(self.redis.set(keys.breaker_probe_scheduled(), repr(due), nx=True, ex=ttl))

    def drop_probe_schedule(self) -> None:
        """The scheduled probe ran (or its publish failed): the next one may be scheduled."""
        self.redis.delete(keys.breaker_probe_scheduled())

    def kept_practice(self) -> int | None:
        """One practice whose work is kept (the probe's candidate), or None."""
        found = self.redis.srandmember(keys.breaker_waiting())
        return int(found) if found is not None else None

    def _release_probes(self, scopes: Iterable[str]) -> None:
        names = [keys.breaker_probe(scope) for scope in scopes]
        if names:
            self.redis.delete(*names)


def _parse(scope: str, fields: dict) -> BreakerState | None:
    if not fields:
        return None
    get = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in fields.items()}
    try:
        return BreakerState(scope=scope, cause=Verdict(get["cause"]), opened_at=float(get["opened_at"]),
                            failures=int(get["failures"]), next_probe_at=float(get["next_probe_at"]))
    except (KeyError, ValueError):
        return None  # not ours, or half-written: treated as closed, the next refusal writes it anew


def open_breakers(redis: CoordinationClient) -> list[BreakerState]:
    """Every open breaker, whatever its key (metrics, health on another host, closing a fixed key's)."""
    found = []
    for name in redis.scan_iter(match=keys.breaker("*"), count=100):
        name = name.decode() if isinstance(name, bytes) else name
        scope = name[len(keys.breaker("")):]
        state = _parse(scope, redis.hgetall(name))
        if state is not None:
            found.append(state)
    return sorted(found, key=lambda s: s.scope)

"""The soak's table: faults injected, invariants checked, violations with their audit trails."""

from __future__ import annotations

from collections import Counter

from soak.schedule import FAULTS


def table(outcome, invariants: list[str]) -> str:
    s = outcome.schedule
    lines = [f"Chaos soak: seed {s.seed}, {s.seconds / 60:g} min of chaos, {s.mix} mix, "
             f"{outcome.seconds:.0f} s in all; settled "
             + (f"after {outcome.settled_after:.0f} s" if outcome.settled_after is not None else "NOT (limit reached)"),
             ""]
    lines += ["| fault | injected |", "|---|---:|"]
    lines += [f"| {name} | {outcome.faults.get(name, 0)} |" for name in FAULTS if name in outcome.faults
              or name in _mix(s.mix)]
    lines += [f"| **faults injected** | **{sum(outcome.faults.values())}** |", ""]
    lines += ["| world move | count |", "|---|---:|"]
    lines += [f"| {name} | {n} |" for name, n in sorted(outcome.moves.items())]
    lines += ["", "| reports | count |", "|---|---:|"]
    lines += [f"| {name} | {n} |" for name, n in sorted(outcome.reports.items())]
    by_invariant = Counter(v.invariant for v in outcome.violations)
    lines += ["", "| invariant | checked | violations |", "|---|---:|---:|"]
    lines += [f"| {name} | {outcome.checked.get(name, 0)} | {by_invariant.get(name, 0)} |" for name in invariants]
    lines += [f"| **invariants checked** | **{len(invariants)}** | **{len(outcome.violations)}** |"]
    if outcome.violations:
        lines += ["", "Violations:"]
        for v in outcome.violations:
            lines.append(f"- [{v.invariant}] practice {v.practice_id if v.practice_id is not None else '-'}: {v.what}")
            for trail in outcome.trails.get(v.practice_id, []) if v.practice_id is not None else []:
                lines.append(f"    {trail}")
    if outcome.logs:
        lines += ["", f"logs: {outcome.logs}"]
    return "\n".join(lines)


def _mix(mix: str) -> tuple[str, ...]:
    from soak.schedule import MIXES

    return MIXES[mix]

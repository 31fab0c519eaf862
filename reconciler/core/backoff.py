"""The one backoff formula: exponential from a base, capped, with jitter. Pure.

Three callers share it: a practice's retry after ``halo_unavailable`` (equal jitter, so a retry
never collapses to "now"), the Halo client between attempts of one call (full jitter, as Halo asks:
spread many workers' retries over the whole window), and webhook delivery (no jitter: one sender).
"""

from __future__ import annotations

from datetime import timedelta

_MAX_EXPONENT = 32  # 2**32 × any base is past every cap; keeps the float finite


def exponential(attempts: int, *, base: float, cap: float | None = None) -> float:
    """``base × 2**attempts``, capped; ``attempts`` counts the failures so far (0 for the first wait)."""
    value = base * 2 ** min(max(attempts, 0), _MAX_EXPONENT)
    return value if cap is None else min(value, cap)


def full_jitter(attempts: int, *, base: float, random: float, cap: float | None = None) -> float:
    """Anywhere in ``[0, exponential]`` (AWS architecture blog's "full jitter")."""
    return _clamp(random) * exponential(attempts, base=base, cap=cap)


def equal_jitter(attempts: int, *, base: float, random: float, cap: float | None = None) -> float:
    """Half the exponential plus up to the other half: within ``[base/2, cap]``, never zero."""
    ceiling = exponential(attempts, base=base, cap=cap)
    return ceiling / 2 + _clamp(random) * ceiling / 2


def as_delay(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _clamp(random: float) -> float:
    return min(max(random, 0.0), 1.0)

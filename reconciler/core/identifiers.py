"""Secondary identifiers: recorded raw, compared after normalising case and white space."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from reconciler.core.sites import Site

_SPACE = re.compile(r"\s+")


def normalise(value: object) -> str:
    """NFKC, case-folded, runs of white space collapsed to one space, trimmed. Idempotent."""
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    # casefold can produce sequences NFKC would compose differently: normalise again to be idempotent.
    text = unicodedata.normalize("NFKC", text)
    return _SPACE.sub(" ", text).strip()


def normalise_identifiers(raw: Mapping[str, Any]) -> dict[str, str]:
    return {normalise(key): normalise(value) for key, value in raw.items() if value is not None}


def identifiers_from_site(site: Site, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The raw secondary identifiers a site shows: its practice name, plus the identifier query's row."""
    identifiers: dict[str, Any] = {}
    if site.practice_name is not None:
        identifiers["practice_name"] = site.practice_name
    for key, value in (extra or {}).items():
        if key != "practice_name" and value is not None:
            identifiers[str(key)] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return identifiers


def differing(recorded: Mapping[str, str], seen: Mapping[str, str]) -> list[str]:
    """Names of recorded identifiers that differ from what Halo shows now.

    An identifier recorded but now missing differs (the practice's name vanishing is news). One
    seen now but never recorded does not: an integrator who adds an identifier query later must not
    turn every practice into a business change overnight; it becomes part of the baseline at the
    next approval.
    """
    return sorted(name for name, value in recorded.items() if seen.get(name) != value)

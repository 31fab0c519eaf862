"""The Lua scripts the coordination store runs, read from ``lua/*.lua`` beside this module.

A script may fold others into its one round trip: a line ``--#include NAME`` becomes the local
function ``NAME(KEYS, ARGV)`` whose body is ``lua/NAME.lua`` unchanged (its ``KEYS`` and ``ARGV`` are
the arguments the caller hands it), so each rule is written once whether it runs alone or folded.
An include that only holds helpers ends with ``return`` of them (``lua/queued_mark.lua``): the
script calls it once, ``local mark = queued_mark()``.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

_INCLUDE = re.compile(r"^--#include (\w+)$", re.M)


@cache
def load(name: str) -> str:
    return expand((files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8"))


def registered(client: Any, name: str) -> Any:
    """``name``'s script on this client (redis-py's ``Script``), registered once per client: a
    ``Script`` hashes its text when made, and a run's adapters are built anew for every run."""
    found = client.__dict__.setdefault("_halo_scripts", {})
    script = found.get(name)
    if script is None:
        script = found[name] = client.register_script(load(name))
    return script


def expand(text: str) -> str:
    """A script's text with its ``--#include`` lines folded in."""
    return _INCLUDE.sub(lambda m: f"local function {m[1]}(KEYS, ARGV)\n{load(m[1])}\nend", text)

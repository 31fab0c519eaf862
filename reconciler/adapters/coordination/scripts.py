"""The Lua scripts the coordination store runs, read from ``lua/*.lua`` beside this module.

A script may fold others into its one round trip: a line ``--#include NAME`` becomes the local
function ``NAME(KEYS, ARGV)`` whose body is ``lua/NAME.lua`` unchanged (its ``KEYS`` and ``ARGV`` are
the arguments the caller hands it), so each rule is written once whether it runs alone or folded.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_INCLUDE = re.compile(r"^--#include (\w+)$", re.M)


@cache
def load(name: str) -> str:
    text = (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: f"local function {m[1]}(KEYS, ARGV)\n{load(m[1])}\nend", text)

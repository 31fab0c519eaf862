"""Halo GUIDs: one canonical spelling so a lookup never misses on case or braces."""

import re
import uuid

# The form we store is the form applications send back nearly every time (they took it from us):
# recognising it costs one match, where ``uuid.UUID`` parses and formats again.
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class InvalidGuid(ValueError):
    """A string that is not a GUID. Raised for bad input; the message names the value (cut short)."""


def parse_guid(value: object) -> str:
    """Return ``value`` as a lower-case, hyphenated GUID or raise :class:`InvalidGuid`.

    Accepts the forms people paste (upper case, braces, ``urn:uuid:``), because GUIDs reach us
    from URLs, logs and spreadsheets; stores exactly one form.
    """
    if type(value) is str and len(value) == 36 and _CANONICAL.fullmatch(value):
        return value
    if not isinstance(value, str):
        raise InvalidGuid(f"a GUID must be a string, not {type(value).__name__}")
    text = value.strip()
    if not 32 <= len(text) <= 45:
        raise InvalidGuid(f"not a GUID: {_shown(text)}")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidGuid(f"not a GUID: {_shown(text)}") from None


def _shown(text: str, limit: int = 80) -> str:
    """The value as a message may show it: quoted, escaped, and never longer than ``limit``."""
    shown = repr(text[:limit])
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


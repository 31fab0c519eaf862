"""Halo GUIDs: one canonical spelling so a lookup never misses on case or braces."""

import uuid


class InvalidGuid(ValueError):
    """A string that is not a GUID. Raised for bad input; the message names the value (cut short)."""


def parse_guid(value: object) -> str:
    """Return ``value`` as a lower-case, hyphenated GUID or raise :class:`InvalidGuid`.

    Accepts the forms people paste (upper case, braces, ``urn:uuid:``), because GUIDs reach us
    from URLs, logs and spreadsheets; stores exactly one form.
    """
    if not isinstance(value, str):
        raise InvalidGuid(f"a GUID must be a string, not {type(value).__name__}")
    text = value.strip()
    if not 32 <= len(text) <= 45:
        raise InvalidGuid(f"not a GUID: {text[:60]!r}")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidGuid(f"not a GUID: {text[:60]!r}") from None


"""Who decided and why: the actor's name and the note, checked once, wherever they come from."""

from __future__ import annotations

from reconciler.core.errors import BadInput
from reconciler.core.vocabulary import WORKER_ACTOR, OperatorRole

ACTOR_MAX = 128
NOTE_MAX = 1000


def parse_actor(value: str | None) -> str:
    """A person's name for the audit trail: printable, at most 128 characters, not ``worker``."""
    return _parse_name(value, empty="--by needs a name (who made this decision)", label="--by")


def _parse_name(value: str | None, *, empty: str, label: str) -> str:
    name = " ".join((value or "").split())
    if not name:
        raise BadInput(empty)
    if len(name) > ACTOR_MAX or not name.isprintable():
        raise BadInput(f"{label} must be a printable name of at most {ACTOR_MAX} characters")
    if name.casefold() == WORKER_ACTOR:
        raise BadInput(f"{label} {WORKER_ACTOR!r} is reserved for the worker's own reconciliations")
    return name


def parse_note(value: str | None) -> str | None:
    """The reason given, trimmed; None when none was given. Line breaks are kept, other control
    characters are not allowed."""
    if value is None:
        return None
    note = value.strip()
    if not note:
        return None
    if len(note) > NOTE_MAX:
        raise BadInput(f"--note is {len(note)} characters long; at most {NOTE_MAX}")
    if any(not (ch.isprintable() or ch in "\n\t") for ch in note):
        raise BadInput("--note holds control characters")
    return note


def parse_operator_name(value: str) -> str:
    """An operator's sign-in name: like an actor, and without white space inside."""
    name = _parse_name(value, empty="an operator needs a name (the NAME they sign in with)", label="an operator's name")
    if any(ch.isspace() for ch in name):
        raise BadInput("an operator's name has no spaces")
    return name


def parse_role(value: str) -> OperatorRole:
    try:
        return OperatorRole(value.strip().lower())
    except ValueError:
        raise BadInput(f"unknown role {value.strip()[:20]!r}: expected viewer, approver or admin") from None

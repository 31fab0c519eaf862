"""Operators' passwords: argon2id hashes (argon2-cffi's defaults, RFC 9106's low-memory profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from reconciler.core.errors import BadInput

_hasher = PasswordHasher()
MIN_LENGTH = 10
MAX_LENGTH = 1024

# Verified against when the name is unknown, so a sign-in takes as long whether or not it exists.
_DUMMY = _hasher.hash("not a password of anyone's")


def check_new_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise BadInput(f"the password must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise BadInput(f"the password must be at most {MAX_LENGTH} characters long")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_new_password(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; False otherwise, including for an unknown operator (None)."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False

"""Counting the SQL statements the store sends: the suite's statement counts and the reconcile benchmark."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from worker import db


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    """Every statement this process's engine sends while the block runs, whitespace folded, in order
    (SQLAlchemy's ``before_cursor_execute``: what reaches the driver, one per round trip)."""
    statements: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append(" ".join(statement.split()))

    engine = db.get_engine()
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)

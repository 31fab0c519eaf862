"""Column types shared by the tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Index, Table, event, text
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    PostgreSQL keeps the zone (``timestamptz``); SQLite drops it, so values are stored as naive UTC
    and made aware again on the way out. Naive datetimes are refused on the way in: a naive
    timestamp is a bug (whose clock?), not a value.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def postgresql_where_on_create(index: Index, where: str) -> None:
    """Give ``index`` (declared with ``sqlite_where``) the same predicate on PostgreSQL, when its
    table is created there.

    Naming a dialect's option at import (``postgresql_where=``) makes SQLAlchemy import that dialect
    to check it: for PostgreSQL the whole package with every driver's module (asyncpg's, psycopg's),
    ~26 ms that every command-line start paid on SQLite too (docs/BENCHMARKS.md, "cli"). The option
    is set just before PostgreSQL DDL for the table is emitted, where that dialect is loaded anyway.
    The schema does not change: the migrations, which create the tables, spell both predicates out.
    """

    def on_postgresql(target: Table, connection: Any, **_: Any) -> None:
        if connection.dialect.name == "postgresql":
            index.dialect_kwargs["postgresql_where"] = text(where)

    event.listen(index.table, "before_create", on_postgresql)

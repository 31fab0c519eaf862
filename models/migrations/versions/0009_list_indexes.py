"""Lists at fleet scale: the indexes the console's and the command line's keyset pages read.

- ``practices (state, id)``: the practice browser's state filter, a page at a time in id order, and
  its counts by state (an index-only scan);
- ``reconciliations (practice_id, started_at, id)`` and ``(action, started_at, id)``: the audit
  filtered by practice or action, newest first, each page starting after the previous one's last
  ``(started_at, id)``;
- ``decisions (actor, at, id)``: the audit filtered by who decided.

On PostgreSQL, the practice search (a name or PMS ID containing the text) reads trigram indexes
(``pg_trgm``, a trusted extension of PostgreSQL's contrib that a database owner may create). Where the
extension cannot be had the migration goes on without them, and the search scans the table.

The first two on reconciliations extend ``ix_reconciliations_practice_started`` and
``ix_reconciliations_action_started`` by the id (a page's tie-breaker); those stay, as the guard's
and retention's queries read them. On a large existing table run ``db upgrade`` in a quiet hour.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_practices_state_id", "practices", ["state", "id"]),
    ("ix_reconciliations_practice_started_id", "reconciliations", ["practice_id", "started_at", "id"]),
    ("ix_reconciliations_action_started_id", "reconciliations", ["action", "started_at", "id"]),
    ("ix_decisions_actor_at_id", "decisions", ["actor", "at", "id"]),
]


# Expression indexes (not in the models: the search's LIKE on PostgreSQL only).
TRIGRAMS = [("ix_practices_name_trgm", "practice_name"), ("ix_practices_pms_id_trgm", "pms_id")]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError:
        savepoint.rollback()  # no pg_trgm here: the search scans the table instead
        return
    savepoint.commit()
    for name, column in TRIGRAMS:
        bind.execute(sa.text(f"CREATE INDEX {name} ON practices USING gin (lower({column}) gin_trgm_ops)"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _ in TRIGRAMS:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)

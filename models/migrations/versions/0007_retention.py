"""Retention: routine verifications fold into verification_days; the index a retention pass reads.

The partial index's predicate is a copy of ``models.verification_day.ROUTINE_VERIFICATION_SQL``
(a migration is frozen; the model may move on). PostgreSQL builds it with CONCURRENTLY-free
``CREATE INDEX``: on a large existing table, run ``db upgrade`` in a quiet hour.

Revision ID: 0007
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ROUTINE = ("verdict = 'unchanged' AND action = 'marked_verified' AND trigger != 'manual' "
           "AND ticket_id IS NULL")


def upgrade() -> None:
    op.create_table(
        "verification_days",
        sa.Column("practice_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["practice_id"], ["practices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("practice_id", "day"),
    )
    op.create_index("ix_reconciliations_routine_started", "reconciliations", ["started_at", "id"], unique=False,
                    postgresql_where=sa.text(ROUTINE), sqlite_where=sa.text(ROUTINE))


def downgrade() -> None:
    op.drop_index("ix_reconciliations_routine_started", table_name="reconciliations",
                  postgresql_where=sa.text(ROUTINE), sqlite_where=sa.text(ROUTINE))
    op.drop_table("verification_days")
